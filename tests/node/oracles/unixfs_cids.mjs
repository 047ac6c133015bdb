// Independent CID oracle: npm ipfs-unixfs-importer (+ blockstore-core) from the repo's node_modules.
// usage: node unixfs_cids.mjs --chunk-size N --max-links M --cid-version V --raw-leaves true|false FILE...
// prints "<cid base32 or base58 for v0> <file>" per file, in order.
import { createReadStream } from 'node:fs'
import { parseArgs } from 'node:util'
import { importer } from 'ipfs-unixfs-importer'
import { fixedSize } from 'ipfs-unixfs-importer/chunker'
import { balanced } from 'ipfs-unixfs-importer/layout'
import { BlackHoleBlockstore } from 'blockstore-core/black-hole'

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    'chunk-size': { type: 'string' },
    'max-links': { type: 'string' },
    'cid-version': { type: 'string' },
    'raw-leaves': { type: 'string' }
  }
})
const options = {
  cidVersion: Number(values['cid-version']),
  rawLeaves: values['raw-leaves'] === 'true',
  chunker: fixedSize({ chunkSize: Number(values['chunk-size']) }),
  layout: balanced({ maxChildrenPerNode: Number(values['max-links']) }),
  reduceSingleLeafToSelf: true
}
for (const path of positionals) {
  let last
  for await (const entry of importer([{ content: createReadStream(path, { highWaterMark: 1 << 20 }) }], new BlackHoleBlockstore(), options)) {
    last = entry
  }
  const cid = options.cidVersion === 0 ? last.cid.toString() : last.cid.toV1().toString()
  console.log(`${cid} ${path}`)
}

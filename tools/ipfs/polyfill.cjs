// Node 20 lacks Promise.withResolvers (Node 22), which a js-ipfs dependency calls; preloaded with
// NODE_OPTIONS=--require <this file> by node/ipfsdaemon.py.
if (typeof Promise.withResolvers !== 'function') {
  Promise.withResolvers = function () { let resolve, reject; const promise = new Promise((res, rej) => { resolve = res; reject = rej }); return { promise, resolve, reject } }
}

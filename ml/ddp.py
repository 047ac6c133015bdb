"""Training that runs in one process or scales out under torchrun: DistributedDataParallel over
gloo on CPU, NCCL with one GPU per process (ml/retrain.py trains through it).

    procs = Processes()                  # joins torchrun's process group when launched by it
    figures = fine_tune(model, tokenizer, rows, cfg, procs)
    procs.share(value)                   # process 0's value on every process
    procs.close()

Each optimizer step's rows come from one seeded shuffle per epoch (the same on every process);
each process trains on its share of the step (rows rank, rank + world, ...) and its summed loss is
scaled by world / rows in the step, so DDP's averaged gradient is the whole step's mean-loss
gradient, as in one process. DDP broadcasts process 0's weights at the start and every process
applies the same averaged gradients, so all end with the same weights.
"""

from __future__ import annotations

import dataclasses
import os
import time

from ml import train as training
from ml.trainconfig import TrainConfig
from node.errors import InputError

# Heavy packages load late (torch and transformers): each is imported in the function that uses
# it, marked `late (heavy)`, because the node's worker and the CLI import this module at start-up.


class Processes:
    """This process's place in a torchrun launch: rank, world size, device and collectives (one
    process, rank 0 of 1, when not launched by torchrun)."""

    def __init__(self):
        import torch  # late (heavy)
        import torch.distributed as dist  # late (heavy)

        self.dist = dist
        self.launched = dist.is_torchelastic_launched() and int(os.environ["WORLD_SIZE"]) > 1
        self.joined = self.launched and not dist.is_initialized()
        if self.launched and torch.cuda.is_available():
            local = int(os.environ["LOCAL_RANK"])
            torch.cuda.set_device(local)
            self.backend = "nccl"
        else:
            self.backend = "gloo" if self.launched else "none"
        if self.joined:
            dist.init_process_group(self.backend)
        self.rank = dist.get_rank() if self.launched else 0
        self.world = dist.get_world_size() if self.launched else 1
        device, self.autocast = training.pick_device()
        if device.type == "cuda" and self.launched:
            device = torch.device("cuda", torch.cuda.current_device())
        self.device = device

    def wrap(self, module):
        """``module`` under DistributedDataParallel when there are several processes."""
        if not self.launched:
            return module
        from torch.nn.parallel import DistributedDataParallel  # late (heavy)

        ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(module, device_ids=ids)

    def share(self, value):
        """Process 0's value, on every process."""
        if not self.launched:
            return value
        box = [value]
        self.dist.broadcast_object_list(box, src=0)
        return box[0]

    def close(self) -> None:
        if self.joined:
            self.dist.destroy_process_group()


def batch_plan(n_rows: int, cfg: TrainConfig, world: int, seed: int) -> list[list[int]]:
    """Row indices of every optimizer step, all epochs: a seeded shuffle per epoch cut into
    batches; a last batch with fewer rows than processes joins the one before it."""
    import torch  # late (heavy)

    generator = torch.Generator().manual_seed(seed)
    plan = []
    for _ in range(cfg.epochs):
        order = torch.randperm(n_rows, generator=generator).tolist()
        steps = [order[i : i + cfg.batch_size] for i in range(0, n_rows, cfg.batch_size)]
        if len(steps) > 1 and len(steps[-1]) < world:
            steps[-2].extend(steps.pop())
        plan.extend(steps)
    if any(len(step) < world for step in plan):
        raise InputError(f"{n_rows} rows cannot give each of {world} processes a row per step")
    return plan


def logits_of(model, procs: Processes):
    """A module whose forward(batch) is ml.train.forward's logits: what DDP wraps, so that the
    padding-free forward's gradients are averaged across processes too."""
    import torch  # late (heavy)

    class Logits(torch.nn.Module):  # defined here: torch loads late (see the imports)
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, batch):
            return training.forward(self.model, batch, procs.device, procs.autocast)[0]

    return Logits()


def fine_tune(model, tokenizer, rows: list, cfg: TrainConfig, procs: Processes) -> dict:
    """Train model on rows (this process's share of each step); returns the run's figures."""
    import torch  # late (heavy)
    from transformers import get_linear_schedule_with_warmup  # late (heavy)

    model.to(procs.device)
    packed = cfg.packed and training.packing.supports(model)
    net = procs.wrap(logits_of(model, procs))
    plan = batch_plan(len(rows), cfg, procs.world, cfg.seed)
    optimizer = training.make_optimizer(model, cfg)
    warmup = int(cfg.warmup_ratio * len(plan))
    scheduler = get_linear_schedule_with_warmup(optimizer, warmup, len(plan))
    history = []
    model.train()
    started = time.perf_counter()
    for step, indices in enumerate(plan, start=1):
        mine = [rows[i] for i in indices[procs.rank :: procs.world]]
        one_batch = dataclasses.replace(cfg, batch_size=len(mine))
        batch = next(training.batches(mine, tokenizer, one_batch, packed=packed))
        logits = net(batch)
        labels = batch["labels"].to(procs.device)
        # sum over this share / rows in the whole step, times the processes DDP averages over:
        # the averaged gradient is the whole step's mean loss's, as in one process
        loss = torch.nn.functional.cross_entropy(logits, labels, reduction="sum")
        (loss * procs.world / len(indices)).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        history.append({"step": step, "loss": round(loss.item() / len(mine), 5)})
    seconds = time.perf_counter() - started
    model.to("cpu")
    return {
        "device": str(procs.device),
        "forward": "packed" if packed else "padded",
        "processes": procs.world,
        "backend": procs.backend,
        "train_rows": len(rows),
        "steps": len(plan),
        "train_seconds": round(seconds, 3),
        "train_samples_per_s": round(len(rows) * cfg.epochs / seconds, 3),
        "history": history,
    }

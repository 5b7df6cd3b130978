"""`retain_freed_memory`: the activations of a forward pass, freed by the thread that runs the
model, are reused by the next pass instead of being mapped and faulted in afresh."""

from __future__ import annotations

import subprocess
import sys

from conftest import REPO_ROOT

# Page faults of two forward passes after three (78 MB activations) in a fresh thread, with the
# allocator set up first, as the model service does before it starts the thread that runs the model.
SCRIPT = """
import resource, sys, threading
from pipeline.inference.memory import retain_freed_memory
if sys.argv[1] == "retain":
    assert retain_freed_memory()
import torch
net = torch.nn.Sequential(torch.nn.Conv1d(1, 256, 10, 5), torch.nn.GELU(), torch.nn.Conv1d(256, 256, 3, 2))
x = torch.randn(8, 1, 48000)
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
def work():
    with torch.inference_mode():
        for _ in range(3):  # until the heap has settled
            net(x).sum()
        before = faults()
        net(x).sum()
        net(x).sum()
        print(faults() - before)
thread = threading.Thread(target=work)
thread.start()
thread.join()
"""


def later_pass_faults(mode: str) -> int:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, mode], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    )
    return int(done.stdout.split()[-1])


def test_a_second_forward_pass_reuses_the_freed_activations():
    pages = 2 * 78 * 2**20 // 4096  # two passes' 78 MB output, in 4 KiB pages
    assert later_pass_faults("default") > pages  # glibc maps each block afresh
    assert later_pass_faults("retain") < pages // 50

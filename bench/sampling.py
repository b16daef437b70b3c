"""Sampling time: vlod's decode loop (`decoding.decode`) against transformers' `generate`, same tokens.

Both draw from the same encoded batch of toy prompts with the same seed (`SamplingConfig()`: temperature 1,
top-p 1, the private-generator sampler), on a copy of the default toy pair's student whose
`generation_config.min_new_tokens` equals `max_new_tokens`, so every call really decodes that many tokens
(the toy student stops after ~3). The two paths alternate call by call (one warm-up pair of calls dropped);
medians. The tokens of every timed pair of calls are compared, and the run fails if they ever differ.

    python bench/sampling.py                       # batch 32; 8 and 48 new tokens; ~1 minute
    python bench/sampling.py --batch 8 --tokens 6 --rounds 10
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import sys
import time
import warnings

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
warnings.filterwarnings("ignore")

import torch  # noqa: E402

torch.set_num_threads(1)

from vlod_core.inputs import encode_prompts  # noqa: E402
from vlod_core.pair import PairSpec, load_pair  # noqa: E402
from vlod_core.sampling import SamplingConfig, generate_encoded, hf_generate_encoded  # noqa: E402
from vlod_core import toy  # noqa: E402
from vlod_core.toy import world  # noqa: E402


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--tokens", type=int, nargs="+", default=[8, 48])
    parser.add_argument("--rounds", type=int, default=15, help="timed calls per path and length")
    args = parser.parse_args(argv)
    spec = PairSpec(device="cpu")
    pair = load_pair(spec, toy.folders(spec))
    examples = world.sample_examples(args.batch, seed=0)
    encoded = encode_prompts(pair.processor, [e.question for e in examples], [e.image() for e in examples])
    print(
        f"torch {torch.__version__}, 1 intra-op thread; toy student, batch {args.batch}, "
        f"prompt length {encoded['input_ids'].shape[1]}"
    )
    failures = 0
    for tokens in args.tokens:
        student = copy.deepcopy(pair.student)
        student.generation_config.min_new_tokens = tokens  # decode all `tokens`, both paths
        config = SamplingConfig(max_new_tokens=tokens)
        times = {"loop": [], "generate": []}
        for r in range(args.rounds + 1):
            seed = r
            order = ("loop", "generate") if r % 2 else ("generate", "loop")
            outs = {}
            for name in order:
                fn = generate_encoded if name == "loop" else hf_generate_encoded
                seconds, outs[name] = timed(lambda: fn(student, pair.tokenizer, encoded, config, seed))
                if r:
                    times[name].append(seconds)
            if outs["loop"] != outs["generate"]:
                failures += 1
                print(f"tokens differ at {tokens} new tokens, seed {seed}")
        loop, gen = (1000 * statistics.median(times[k]) for k in ("loop", "generate"))
        length = statistics.mean(len(r) for r in outs["loop"])
        print(
            f"{tokens} new tokens ({length:.0f} decoded): loop {loop:.1f} ms, generate {gen:.1f} ms "
            f"[{args.rounds} each]"
        )
        print(f"sampling loop/generate ({tokens} tokens, batch {args.batch}) = {loop / gen:.2f}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

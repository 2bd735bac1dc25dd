"""Issue 29: how much the sampling loop's numerics move a restored face (docs/official-parity.md).

    python tools/measure_numerics.py [--model default] [--photo src/prefrestore/assets/examples/grace_hopper.jpg]

One face of the photo (MTCNN, aligned to the model's resolution) is restored by the model cast to bf16 (CPU) with
the same seed under each setting; printed as JSON: the max abs difference of the restored image (in [-1, 1] and in
8-bit levels) from the reference. Settings, each at the model's own sampling and at the paper's (30 Euler steps from
pure noise; CFG 2 where the model's guidance is above 1, else 1):

* ``bf16_timesteps``: SANA given (sigma * 1000) rounded to bf16, as before the fix (a forward pre-hook), vs the
  float32 timesteps it now gets;
* ``official_numerics``: numerics="official" (bf16 noise and state, [null, cond] batch) vs the default loop;
* ``bf16_model``: the bf16 model vs the float32 model (both default numerics), for scale.

Also ``tatok_preprocessing``: TA-Tok's input and token ids (float32 model) with SiglipImageProcessor's preprocessing
(now) vs the float-tensor antialiased bicubic resize used before.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="default")
    p.add_argument("--photo", default=str(ROOT / "src/prefrestore/assets/examples/grace_hopper.jpg"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)

    from prefrestore.checkpoints import load_model
    from prefrestore.faces.align import align
    from prefrestore.faces.detect import build_detector
    from prefrestore.io.image import load_rgb, to_model

    f32 = load_model(args.model)
    S = f32.config.resolution
    photo = load_rgb(args.photo)
    faces = build_detector("mtcnn").detect(photo)
    if not faces:
        raise SystemExit(f"{args.photo}: no face found; pass --photo with a face")
    lq = to_model(align(photo, faces[0], S).crop)  # (1, 3, S, S)
    bf16 = load_model(args.model, dtype=torch.bfloat16)

    def restore(model, *, bf16_timesteps=False, **kw):
        hook = None
        if bf16_timesteps:

            def round_t(module, a, k):
                k["timestep"] = k["timestep"].to(torch.bfloat16)
                return a, k

            hook = model.transformer.register_forward_pre_hook(round_t, with_kwargs=True)
        try:
            out = model.restore(lq, generators=[torch.Generator().manual_seed(args.seed)], **kw)
        finally:
            if hook is not None:
                hook.remove()
        return out.float()

    def diff(a, b):
        d = (a - b).abs().max().item()
        return {"max_abs": round(d, 6), "max_abs_8bit_levels": round(d * 127.5, 2)}

    tok = f32.tokenizer
    new_in = tok.preprocess(lq)
    s = tok.config.image_size
    old_in = torch.nn.functional.interpolate(lq, size=(s, s), mode="bicubic", antialias=True).clamp(-1, 1)
    with torch.no_grad():
        new_ids = tok(lq)
        tok.preprocess = lambda x: old_in  # the old preprocessing, for this one call
        old_ids = tok(lq)
        del tok.preprocess

    d = f32.config.sampling
    settings = {
        "model": {},
        "paper": {
            "steps": 30,
            "solver": "euler",
            "start_sigma": 1.0,
            "guidance_scale": 2.0 if d.guidance_scale > 1 else 1.0,
        },
    }
    result = {
        "model": args.model,
        "photo": Path(args.photo).name,
        "resolution": S,
        "model_sampling": {
            "steps": d.steps,
            "solver": d.solver,
            "start_sigma": d.start_sigma,
            "guidance_scale": d.guidance_scale,
        },
        "tatok_preprocessing": {
            "input_max_abs": round((new_in - old_in).abs().max().item(), 6),
            "ids_differ": int((new_ids != old_ids).sum()),
            "ids": new_ids.numel(),
        },
    }
    for name, kw in settings.items():
        ref = restore(bf16, **kw)
        result[name] = {
            "sampling": kw or "the model's",
            "bf16_timesteps": diff(restore(bf16, bf16_timesteps=True, **kw), ref),
            "official_numerics": diff(restore(bf16, numerics="official", **kw), ref),
            "bf16_model": diff(ref, restore(f32, **kw)),
        }
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()

"""Check the torch identity networks against dlib and on real same/different-person pairs; prints JSON.

    .venv/bin/python tools/verify_identity_nets.py --corpus runs/corpus

Needs the converted weights (``prefrestore weights dlib_resnet mobileface``), dlib (``prefrestore[identity]``) and
the offline face corpus of ``tools/build_corpus.py`` (FFHQ-aligned crops; only un-augmented faces are read).

1. **dlib in torch vs dlib**: on every face, dlib's 5 landmarks (inside the HOG box, as the IDD-dlib metric), the
   150 px chip cut by ``dlib.get_face_chip`` and dlib's descriptor of that chip against our network's descriptor of
   the same chip (cosine, max abs difference).
2. **the fixed FFHQ -> chip warp**: our network on the FFHQ crop (one similarity, grid_sample) against dlib's
   descriptor from its own landmarks; and how far dlib's landmark-fitted chip lies from the fixed one (pixels of
   the 150 px chip, mean over the chip's corners).
3. **same vs different person**, cross-photo: identities labelled by eye below (a person's photos in the
   facematch gallery of the human package's screenshot, the detect/faceid screenshots, two opencv-doc figures).
   Positive pairs: two different photos of one labelled person; negative pairs: a labelled person against every
   other face not marked uncertain (other faces may repeat among themselves, so they are never paired with each
   other). AUC of the cosine (and of dlib's distance) per network.
"""

from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from prefrestore.faces.align import affine_scale, invert_affine, similarity_transform
from prefrestore.faces.dlib import DlibFaces
from prefrestore.io.image import uint8_to_unit
from prefrestore.metrics.dlib_resnet import CHIP, PADDING, ffhq_to_chip_affine
from prefrestore.metrics.identity import cosine_similarity, load_identity_net

FM = "npm-human_screenshot-facematch_f"
# person -> crops of that person from *different* photos (crop stems of tools/build_corpus.py), labelled by eye
PEOPLE = {
    "human-author": [f"{FM}{k}" for k in (2, 13, 24, 25, 26, 30, 43, 44, 46, 62, 72, 93)]
    + ["npm-human_screenshot-facedetect_f0", "npm-human_screenshot-faceid_f0"],
    "facematch-blond": [f"{FM}1", f"{FM}5"],
    "opencv-doc-man": ["opencv-doc_227943776_1_f0", "opencv-doc_230501201_1_f0"],
}
# not used at all: the same photo as a labelled crop (f4 = f2 extracted), a face swap, or unsure whether it is one
# of the labelled people
# dlib's 5-point chip template (get_face_chip_details for 5-point shapes), padded as compute_face_descriptor pads
DLIB_5PT_CHIP = (
    (
        PADDING
        + np.array(
            [
                [0.8595674595992, 0.2134981538014],
                [0.6460604764104, 0.2289674387677],
                [0.1205750620789, 0.2137274526848],
                [0.3340850613712, 0.2290642403242],
                [0.4901123135679, 0.6277975316475],
            ]
        )
    )
    / (2 * PADDING + 1)
    * CHIP
)
UNCERTAIN = {f"{FM}{k}" for k in (4, 8, 9, 12, 31, 81)} | {"opencv-doc_face_swapped_f0"}


def auc(pos: np.ndarray, neg: np.ndarray) -> float:
    """Probability that a positive scores above a negative (ties count half)."""
    pos, neg = np.asarray(pos)[:, None], np.asarray(neg)[None, :]
    return float((pos > neg).mean() + 0.5 * (pos == neg).mean())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", type=Path, required=True, help="tools/build_corpus.py output (train/ and test/)")
    ap.add_argument("--weights-dir")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    files = sorted(p for split in ("train", "test") for p in (args.corpus / split).glob("*.png") if "_a" not in p.stem)
    files = [p for p in files if p.stem not in UNCERTAIN]
    if len(files) < 20:
        raise SystemExit(
            f"{args.corpus}: {len(files)} un-augmented faces; build the corpus with tools/build_corpus.py"
        )
    crops = {p.stem: np.asarray(Image.open(p).convert("RGB")) for p in files}
    faces = DlibFaces()
    import dlib

    dlib_net = load_identity_net("dlib", override=args.weights_dir)
    mobile = load_identity_net("mobileface", override=args.weights_dir)

    names = list(crops)
    chip_cos, chip_diff, warp_cos, corner_px, ref = [], [], [], [], {}
    torch_chip, torch_ffhq, mface = {}, {}, {}
    for n in names:
        img = crops[n]
        box = faces.box(img)
        shape = faces.shape(img, box)
        chip = dlib.get_face_chip(img, shape, size=CHIP, padding=PADDING)
        ref[n] = np.asarray(faces.encoder.compute_face_descriptor(chip), np.float64)
        with torch.no_grad():
            x = torch.from_numpy(chip).permute(2, 0, 1)[None].float()
            torch_chip[n] = dlib_net.net(x)[0].double().numpy()
            u = uint8_to_unit(img[None])
            torch_ffhq[n] = dlib_net(u)[0].double().numpy()
            mface[n] = mobile(u)[0].double().numpy()
        chip_cos.append(float(cosine_similarity(ref[n][None], torch_chip[n][None])[0]))
        chip_diff.append(float(np.abs(ref[n] - torch_chip[n]).max()))
        own = np.asarray(faces.encoder.compute_face_descriptor(img, shape), np.float64)
        warp_cos.append(float(cosine_similarity(own[None], torch_ffhq[n][None])[0]))
        # dlib's chip from its landmarks vs ours: where the chip corners land in the crop (in chip pixels)
        theirs = similarity_transform(DLIB_5PT_CHIP, faces.landmarks(img, box))  # chip -> crop
        ours = invert_affine(ffhq_to_chip_affine(img.shape[0]))
        corners = np.array([[0, 0], [CHIP - 1, 0], [0, CHIP - 1], [CHIP - 1, CHIP - 1]], np.float64)
        gap = (corners @ theirs[:, :2].T + theirs[:, 2]) - (corners @ ours[:, :2].T + ours[:, 2])
        corner_px.append(float(np.linalg.norm(gap, axis=1).mean() / affine_scale(ours)))

    label = {f: person for person, fs in PEOPLE.items() for f in fs if f in crops}
    pos, neg = [], []
    for a, b in itertools.combinations(names, 2):
        la, lb = label.get(a), label.get(b)
        if la is None and lb is None:
            continue
        (pos if la == lb else neg).append((a, b))
    out = {
        "faces": len(names),
        "dlib_torch_vs_dlib_same_chip": {
            "cosine_min": min(chip_cos),
            "cosine_mean": float(np.mean(chip_cos)),
            "max_abs_diff": max(chip_diff),
        },
        "ffhq_warp_vs_dlib_landmark_chip": {
            "cosine_min": round(min(warp_cos), 4),
            "cosine_mean": round(float(np.mean(warp_cos)), 4),
            "chip_corner_offset_px_mean": round(float(np.mean(corner_px)), 2),
        },
        "pairs": {"same": len(pos), "different": len(neg), "people": len(PEOPLE), "labelled_faces": len(label)},
    }
    for key, emb in (("dlib_package", ref), ("dlib_torch_ffhq_warp", torch_ffhq), ("mobileface", mface)):
        cp = np.array([cosine_similarity(emb[a][None], emb[b][None])[0] for a, b in pos])
        cn = np.array([cosine_similarity(emb[a][None], emb[b][None])[0] for a, b in neg])
        entry = {
            "auc_cosine": round(auc(cp, cn), 4),
            "same_cos_mean": round(float(cp.mean()), 3),
            "different_cos_mean": round(float(cn.mean()), 3),
        }
        if key.startswith("dlib"):
            dp = np.array([np.linalg.norm(emb[a] - emb[b]) for a, b in pos])
            dn = np.array([np.linalg.norm(emb[a] - emb[b]) for a, b in neg])
            entry.update(
                auc_distance=round(auc(-dp, -dn), 4),
                same_dist_mean=round(float(dp.mean()), 3),
                different_dist_mean=round(float(dn.mean()), 3),
                same_below_0_6=round(float((dp < 0.6).mean()), 3),
                different_below_0_6=round(float((dn < 0.6).mean()), 3),
            )
        out[key] = entry
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()

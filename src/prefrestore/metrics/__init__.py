"""Image-quality, fidelity, identity and diversity metrics (float RGB in [0, 1] inside, docs/style.md P5).

Weights are never downloaded at run time (``prefrestore weights fetch``, fetch.py, does it when asked): a metric whose weights are not on disk raises
:class:`~prefrestore.metrics.weights.MetricUnavailable` naming the file (see ``weights.py`` for where to put it).

================  ==========================  =========================================================
module            metrics                     weights
================  ==========================  =========================================================
fidelity          PSNR, SSIM (Y and RGB)      none
lpips             LPIPS-VGG, LPIPS-Alex       `prefrestore weights fetch lpips_vgg lpips_alex`
fid               FID, KID                    `prefrestore weights fetch fid_inception`; any FeatureExtractor
identity          dlib distance, ArcFace Deg  dlib: shipped by face_recognition_models; ArcFace (file)
landmarks         LMD                         MTCNN (prefrestore.faces) or dlib 5-point (shipped)
niqe              NIQE                        pristine model niqe_pris_params.npz (file)
iqa               MUSIQ, CLIP-IQA, MANIQA     pyiqa package + its weight files
entropy           solution entropy            none
================  ==========================  =========================================================
"""

from .entropy import mean_pairwise_distance, pixel_std, pixel_std_map
from .fid import GaussianStats, fid_from_features, frechet_distance, gaussian_stats, kid_from_features
from .pixel import match_mean_std, psnr, rgb_to_y, ssim
from .suite import DEFAULT_METRICS, METRICS, SET_METRICS, ImageScorer, MetricInfo
from .weights import MetricUnavailable, weights_dir

__all__ = [
    "DEFAULT_METRICS",
    "METRICS",
    "SET_METRICS",
    "GaussianStats",
    "ImageScorer",
    "MetricInfo",
    "MetricUnavailable",
    "fid_from_features",
    "frechet_distance",
    "gaussian_stats",
    "kid_from_features",
    "match_mean_std",
    "mean_pairwise_distance",
    "pixel_std",
    "pixel_std_map",
    "psnr",
    "rgb_to_y",
    "ssim",
    "weights_dir",
]

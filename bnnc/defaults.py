"""Defaults that the library and the CLI share, declared once. This module imports nothing but typing, so the CLI can
show them in ``--help`` without importing torch."""

from typing import Literal

MIN_PARAMS = 1024
"""Hidden layers with fewer weights stay FP32: keeping them costs at most 4 KiB."""

MIN_FAN_IN = 64
"""Hidden layers summing fewer inputs per output stay FP32: a sum of fewer than 64 +-1 products takes too few
values. Measured on small MobileNet-V2 / EfficientNet-B0 (Fashion-MNIST sample, 2 epochs): 48.7% ->
70.4% and 59.6% -> 76.3% with them kept. Ordinary convnets have none (a 3x3 conv on 8 channels sums 72)."""

CALIBRATION_BATCHES = 8
"""``convert --data``: training batches (of 256) the input thresholds and int8 ranges are calibrated on."""

FINETUNE_EPOCHS = 5
"""``finetune``: epochs, chosen by measurement on the sample models (README)."""

COMPRESS_EPOCHS = 3
"""``compress``: fewer epochs than ``finetune``, for a quick first result of the whole job."""

BATCH_SIZE = 64
"""``finetune``: batch size. A fine-tuning budget is a few epochs, and binary weights learn by sign flips, one step
at a time: at 64 a convnet gets twice the steps of 128 from the same epochs. Measured (README): sample ResNet 10
epochs 2.57/2.55 -> 1.87/2.16 pt drop (seeds 0/1), VGG 5 epochs 1.52 -> 1.23 pt; the MLP, which overfits the 20k
sample, neither gains nor loses (0.60 -> 0.69 pt) and runs its epochs about 1.6x slower on a CPU."""
WEIGHT_DECAY = 0.0
TEMPERATURE = 4.0
DISTILL_WEIGHT = 0.5
SEED = 0
WORKERS = 0

STE: Literal["hardtanh", "approxsign", "ede"] = "hardtanh"
"""Fine-tuning: the activations' gradient (``hardtanh``, the paper's; ``approxsign``, Bi-Real Net's; ``ede``,
IR-Net's error decay estimator)."""
TWO_STEP = False
"""Fine-tuning: binary activations with real weights for the first half of the epochs (ReActNet)."""
BN_REESTIMATE = False
"""Fine-tuning: BatchNorm statistics re-estimated on training data before each validation (Bi-Real Net)."""
WARMUP = 0.0
"""Fine-tuning: share of the steps with a linear learning-rate warm-up."""
LATENT_LR = 0.05
"""Fine-tuning: each binary layer's latent weights learn at this share of their mean |W| (0: the global learning
rate). Adam moves a weight by about its learning rate a step, so this fixes how far a step goes relative to the
weights, whatever their scale. Measured (README): ResNet sample 4.94 -> 3.89 pt drop at 5 epochs."""
EQUALIZE_LATENT = True
"""Fine-tuning: each output channel's latent weights rescaled to their layer's mean |W| before training, so the
same push flips a weight in any channel (``bnnc.training.recipe.equalize_latent``). Measured (README): no
loss on the three sample models, a small gain within the seeds' spread; it makes the recipe blind to the
per-channel weight scale that BatchNorm leaves arbitrary in users' models."""

BOP = False
"""Fine-tuning: Bop's flips for the binary weights instead of latent weights (``bnnc.training.bop``). Off: it
lost on all three sample models (README), as it throws away what the FP32 weights' magnitudes say about how
sure each sign is."""
BOP_GAMMA = 1e-4
"""Bop: the gradient averages' rate, scaled by the learning-rate schedule (a window of about 1 / gamma steps)."""
BOP_THRESHOLD = 0.03
"""Bop: a weight flips where its averaged gradient, over its root mean square, pushes across zero by more.
With ``BOP_GAMMA`` the best of four pairs on the sample MLP (README)."""

CHECK_SAMPLES = 512
"""Inputs every export is checked on against the PyTorch model."""

REPORT_BATCH = 64
"""The larger batch size ``report`` times (batch 1 always)."""

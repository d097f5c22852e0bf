"""Configuration of training (baseline and retraining) and of the retrain variants."""

from typing import Annotated, Literal

from pydantic import Field

from soxai._base import Section


class TrainConfig(Section):
    """The training recipe, shared by the baseline and every retrained variant."""

    epochs: int = Field(8, ge=1, description="passes over the training split")
    batch_size: int = Field(64, ge=1)
    lr: float = Field(2e-3, gt=0.0, description="learning rate (the start of the schedule)")
    weight_decay: float = Field(0.0, ge=0.0)
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="'auto' uses CUDA when present")
    optimizer: Literal["adam", "adamw", "sgd"] = Field("adam", description="adam, adamw, or sgd with momentum")
    momentum: float = Field(0.9, ge=0.0, lt=1.0, description="sgd: momentum (Nesterov off)")
    schedule: Literal["none", "cosine", "step"] = Field(
        "none", description="learning rate per epoch: constant, cosine to 0 over the epochs, or step decay"
    )
    step_epochs: int = Field(10, ge=1, description="step schedule: multiply the rate by step_gamma every N epochs")
    step_gamma: float = Field(0.1, gt=0.0, le=1.0, description="step schedule: the factor")
    augment: tuple[Literal["hflip", "vflip", "crop"], ...] = Field(
        (), description="training-time augmentations: random horizontal / vertical flips, random crops after "
        "zero-padding by crop_padding; none by default (a flip moves a corner artifact)"
    )
    crop_padding: int = Field(4, ge=1, description="crop augmentation: pixels of zero padding on each side")
    patience: int | None = Field(
        None, ge=1, description="early stopping: stop after this many epochs without a better val accuracy and "
        "keep the best epoch's weights; null trains every epoch (needs a 'val' split)"
    )
    num_workers: int = Field(
        0, ge=0, description="DataLoader worker processes reading images for training, evaluation and saliency "
        "(spawned, not forked); 0 reads in-process"
    )
    amp: bool = Field(False, description="mixed precision (float16 autocast) when training on CUDA; no effect on CPU")
    allow_chance_baseline: bool = Field(
        False, description="go on (with a warning) when the baseline's validation accuracy is within 0.05 of "
        "chance (1/n_classes, or the commonest class's share if larger); by default such a run stops, since the "
        "explanations of a model that learned nothing show no shortcut"
    )


Variant = Literal["baseline", "pruned", "random_control", "reweight", "augment", "jtt", "oracle"]


class RetrainConfig(Section):
    """Which variants are retrained, and over how many seeds."""

    variants: tuple[Variant, ...] = Field(
        ("baseline", "pruned", "random_control"), min_length=1,
        description="also the corrections 'reweight' (group-balanced sampling: each conflict concept of a class "
        "against the rest of it, where a flagged shortcut is carried by most of its class or of the class its "
        "errors go to; a flagged shortcut's carriers never drawn more often than in the baseline) and "
        "'augment' (a flagged concept's region pasted into other classes' images), and the references 'jtt' "
        "(just train twice: no group labels) and 'oracle' (trained without the artifact; evaluation only), "
        "opt-in because each adds a model per seed",
    )
    seeds: tuple[int, ...] = Field(
        (0, 1, 2, 3, 4), min_length=2,
        description="one model per variant and seed; 5 seeds keep the 95% intervals usable (t = 2.78)",
    )
    jtt_epochs: int = Field(
        2, ge=1, description="jtt: epochs of the first, brief model whose training errors are upweighted"
    )
    jtt_upweight: int = Field(
        20, ge=1, description="jtt: each training sample the first model got wrong is seen this many times"
    )
    reweight_max_upweight: float = Field(
        10.0, ge=1.0,
        description="reweight: a sample is drawn at most this many times as often as in the baseline. Each group "
        "of a class (each conflict concept, and the rest of the class) gets an equal share of the class's draws, "
        "so a 3-sample conflict in a class of 300 would otherwise be drawn 50x per sample per epoch and take half "
        "of the class: memorised, not balanced. At 10 a 5% conflict of a class with no other conflict still gets "
        "its full half (1 / (2 * 0.05) = 10); a smaller group gets 10x and the rest of its share goes to the "
        "class's other groups",
    )
    reweight_selection: Literal["balanced_val", "last"] = Field(
        "balanced_val",
        description="reweight: which epoch's weights the model keeps. 'balanced_val': the epoch with the highest "
        "mean accuracy over the val split's (class, concept) groups, its samples assigned to the run's concepts "
        "as the monitor assigns new data (no group labels; every concept, a finer split than the conflict groups "
        "reweighting trains on, soxai.train.selection); 'last': the last epoch, as every other variant. Without "
        "a val split the last epoch is kept",
    )
    augment_rate: float | None = Field(
        None, gt=0.0, le=1.0,
        description="augment: the share of each other class's training images that get a flagged concept's region "
        "pasted in; null matches the share of the concept's class that carries it, which makes the region "
        "equally common in every class (it then predicts no class). For whole-image flags (statistics_transplant), "
        "the share of every class's images recoloured with a random training image's per-channel brightness and "
        "contrast (their own luminance, the donor's colour); null: all of them (the statistics then are independent "
        "of the label)",
    )
    processes: Annotated[int, Field(ge=1)] | Literal["auto"] = Field(
        "auto",
        description="worker processes the train stage's models train in side by side on CPU, each with "
        "usable cores // processes torch threads. 'auto': one per usable core (at most one per model) where the "
        "models train on CPU and together need at least 100,000 sample-epochs (training samples x epochs x "
        "models), else 1: below that a worker's start, 3-4 s importing torch and soxai, costs more than two cores "
        "save. 1: in this process. One thread per model can round otherwise than several (as on a machine with "
        "another core count); the choice depends on the config, the data and the cores only, so results stay the "
        "same for the same config, seed and machine. Not hashed: a kept model is not retrained for it. "
        "A run on Dask trains its models on the cluster instead",
    )
    augment_fallback: Literal["drop_carriers", "reweight", "none"] = Field(
        "drop_carriers",
        description="augment: what a flagged concept that cannot be augmented gets instead (flagged only by a "
        "person's override, own_box or channel_patch, or without carriers to take its region or a share from): "
        "its carriers dropped "
        "(as manifest.policy drop_carriers), its class reweighted by concepts (as the reweight variant), or "
        "nothing; each such concept's reason is recorded",
    )

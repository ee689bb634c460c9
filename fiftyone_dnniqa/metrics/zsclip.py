"""Zero-shot CLIP quality (ZSCLIP-IQA): how well CLIP matches an image to
text prompts built from the task's class names.

After Drenkow & Unberath (2025), "A Causal Framework for Aligning Image
Quality Metrics and Deep Neural Network Robustness" (arXiv:2503.02797).
The image is embedded by a pretrained CLIP image tower and compared, by
cosine similarity scaled with CLIP's logit scale, to embeddings of prompts
such as "a photo of a {class}.". No reference image, no per-image label and
no trained task model are needed; the class names only steer the prompts.

Two variants, both in ``[0, 1]``, higher = better:

- ``class_confidence``: softmax over one prompt per class; the score is a
  confidence statistic of that distribution (by default its maximum)
- ``good_bad``: joint softmax over "a good photo of a {class}." and "a bad
  photo of a {class}." for every class (2C prompts); the score is the total
  probability on the "good" prompts

Weights come from open_clip's pretrained tags and are looked up in the local
Hugging Face cache only; when they are missing and downloads are forbidden
(``HF_HUB_OFFLINE=1`` or ``DNNIQA_OFFLINE=1``) construction fails at once with
one :class:`~fiftyone_dnniqa.weights.MissingWeightsError`, before any network
access.
"""

from __future__ import annotations

import contextlib
import difflib
import functools
import hashlib
import os
from typing import Dict, List, Optional, Sequence, Tuple, Union

import huggingface_hub as hf
import huggingface_hub.constants
import torch
import torch.nn.functional as F

from .aligned import confidence
from .base import InputSpec, QualityMetric
from .imagenet import imagenet_class_names, normalize
from .registry import register_metric
from .weights import MissingWeightsError, is_offline

VARIANTS = ("class_confidence", "good_bad")
#: statistics of the class distribution that stay in [0, 1]
STATISTICS = ("max_prob", "margin", "neg_entropy")
#: prompt templates of the ``class_confidence`` variant; ``{}`` is the class
DEFAULT_TEMPLATES = ("a photo of a {}.", "a photo of the {}.", "an image of a {}.")
#: prompt templates of the ``good_bad`` variant; ``{quality}`` becomes
#: "good" or "bad"
DEFAULT_GOOD_BAD_TEMPLATES = ("a {quality} photo of a {}.", "a {quality} photo of the {}.")
QUALITIES = ("good", "bad")
#: ``classes`` value naming the 1000 ImageNet-1k classes (also the default)
IMAGENET = "imagenet"
#: class lists up to this long are stored verbatim by :meth:`ZSCLIPMetric.describe`
MAX_LISTED_CLASSES = 50
#: OpenAI CLIP's normalisation, open_clip's default
OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)


def clean_class_name(name) -> str:
    """A class name as it reads in a prompt: underscores become spaces."""
    return " ".join(str(name).replace("_", " ").split())


def classes_digest(names: Sequence[str]) -> str:
    """SHA-1 of a class list (order matters), for run records."""
    return hashlib.sha1("\n".join(str(n) for n in names).encode("utf-8")).hexdigest()


@functools.lru_cache(maxsize=4)
def _simple_tokenizer(context_length: int):
    import open_clip  # deferred: heavy, and only this metric needs it

    return open_clip.SimpleTokenizer(context_length=context_length)


def _hub_cache() -> str:
    return huggingface_hub.constants.HF_HUB_CACHE


@register_metric("zsclip")
class ZSCLIPMetric(QualityMetric):
    """Zero-shot CLIP image quality for a task's classes (higher = better).

    Args:
        model ("ViT-B-32"): an open_clip architecture name (see
            ``open_clip.list_models()``)
        pretrained ("openai"): an open_clip pretrained tag of ``model`` (see
            ``open_clip.list_pretrained_tags_by_model(model)``) or the path of
            a local checkpoint file
        classes (None): the task's class names; ``None`` or ``"imagenet"``
            for the 1000 ImageNet-1k classes. Underscores read as spaces
        variant ("class_confidence"): one of :data:`VARIANTS`
        statistic ("max_prob"): for ``class_confidence``, one of
            :data:`STATISTICS`
        templates (None): prompt templates, ``{}`` standing for the class
            name (and ``{quality}`` for "good"/"bad" in the ``good_bad``
            variant); each class's embedding averages its templates. ``None``
            uses :data:`DEFAULT_TEMPLATES` / :data:`DEFAULT_GOOD_BAD_TEMPLATES`
        logit_scale (None): multiplier of the cosine similarities before the
            softmax; ``None`` uses the model's learned scale (100 for OpenAI
            CLIP)
        quick_gelu (None): force QuickGELU on or off; ``None`` takes it from
            the pretrained tag (or the architecture, for a checkpoint file;
            OpenAI checkpoints need ``True``)
        batch_text (256): prompts encoded per text-tower batch
        model_cfg (None): instead of ``model``/``pretrained``, an open_clip
            model config (``embed_dim``, ``vision_cfg``, ``text_cfg``) built
            with random weights, for tests and experiments
        seed (0): the random initialisation of ``model_cfg``
        num_classes, classes_sha1 (None): as written by :meth:`describe`;
            checked against ``classes`` when given

    Raises:
        MissingWeightsError: the pretrained weights are not on disk and cannot
            be downloaded
    """

    name = "zsclip"
    higher_is_better = True
    needs_reference = False
    needs_labels = True  # task-guided: prompts come from the task's class names
    supports_amp = True
    supports_lanes = True

    def __init__(
        self,
        model: Optional[str] = "ViT-B-32",
        pretrained: Optional[str] = "openai",
        classes: Union[None, str, Sequence[str]] = None,
        variant: str = "class_confidence",
        statistic: str = "max_prob",
        templates: Optional[Sequence[str]] = None,
        logit_scale: Optional[float] = None,
        quick_gelu: Optional[bool] = None,
        batch_text: int = 256,
        model_cfg: Optional[dict] = None,
        seed: int = 0,
        num_classes: Optional[int] = None,
        classes_sha1: Optional[str] = None,
    ):
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"unknown variant '{variant}'; choose from {', '.join(VARIANTS)}")
        if variant == "class_confidence" and statistic not in STATISTICS:
            raise ValueError(f"unknown statistic '{statistic}'; choose from {', '.join(STATISTICS)}")
        if logit_scale is not None and logit_scale <= 0:
            raise ValueError("logit_scale must be positive")
        if batch_text < 1:
            raise ValueError("batch_text must be at least 1")
        self.variant = variant
        self.statistic = statistic
        self.templates = self._check_templates(templates, variant)
        self.batch_text = int(batch_text)
        self.quick_gelu = quick_gelu
        self.seed = int(seed)
        self._expected = (num_classes, classes_sha1)
        self._check_classes_arg(classes, num_classes, classes_sha1)

        if model_cfg is not None:
            self.model_name, self.pretrained = None, None
            self.model_cfg = dict(model_cfg)
            self.model, self.tokenizer, preprocess = self._build_random(self.model_cfg, self.seed)
        else:
            if not model:
                raise ValueError("give model (an open_clip architecture) or model_cfg")
            self.model_name, self.pretrained, self.model_cfg = model, pretrained, None
            self.model, self.tokenizer, preprocess = self._build_pretrained(model, pretrained, quick_gelu)
        self.model.eval().requires_grad_(False)

        self.mean = tuple(float(v) for v in preprocess.get("mean", OPENAI_MEAN))
        self.std = tuple(float(v) for v in preprocess.get("std", OPENAI_STD))
        size = getattr(self.model.visual, "image_size", preprocess.get("size", 224))
        self.image_size = int(size if isinstance(size, int) else size[0])
        self.input_spec = InputSpec(resize=self.image_size, crop=self.image_size)
        self.logit_scale = float(logit_scale) if logit_scale is not None else None
        self.scale = self.logit_scale or float(self.model.logit_scale.detach().exp().clamp(max=100).item())

        self._text_cache: Dict[Tuple, torch.Tensor] = {}
        self.set_classes(classes)
        #: no classes were given: compute_quality(label_field=...) may supply the task's
        self.default_classes = classes is None

    # ---------------------------------------------------------------- building

    @staticmethod
    def _check_templates(templates, variant) -> Tuple[str, ...]:
        if templates is None:
            return DEFAULT_GOOD_BAD_TEMPLATES if variant == "good_bad" else DEFAULT_TEMPLATES
        if isinstance(templates, str):
            templates = [templates]
        templates = tuple(str(t) for t in templates)
        if not templates:
            raise ValueError("give at least one prompt template")
        for t in templates:
            if "{}" not in t:
                raise ValueError(f"prompt template {t!r} lacks '{{}}' for the class name")
            if variant == "good_bad" and "{quality}" not in t:
                raise ValueError(f"good_bad prompt template {t!r} lacks '{{quality}}'")
        return templates

    @staticmethod
    def _check_classes_arg(classes, num_classes, classes_sha1):
        if classes_sha1 is not None and (classes is None or isinstance(classes, str)):
            raise ValueError(
                f"these options describe a custom list of {num_classes or 'several'} classes "
                f"(sha1 {classes_sha1}); pass the same list as classes=")

    @staticmethod
    def _build_random(cfg: dict, seed: int):
        import open_clip  # deferred: heavy, and only this metric needs it

        cfg = dict(cfg)
        custom_text = cfg.pop("custom_text", False)
        cls = open_clip.CustomTextCLIP if custom_text else open_clip.CLIP
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = cls(**cfg)
        context = int(cfg.get("text_cfg", {}).get("context_length", 77))
        return model, _simple_tokenizer(context), {"mean": OPENAI_MEAN, "std": OPENAI_STD}

    def _build_pretrained(self, model: str, pretrained: Optional[str], quick_gelu: Optional[bool]):
        import open_clip  # deferred: heavy, and only this metric needs it

        if open_clip.get_model_config(model) is None:
            close = difflib.get_close_matches(model, open_clip.list_models(), n=3)
            hint = f" Did you mean {', '.join(close)}?" if close else ""
            raise ValueError(f"unknown open_clip model '{model}'.{hint} See open_clip.list_models().")
        tag_cfg = open_clip.get_pretrained_cfg(model, pretrained) if pretrained else {}
        if tag_cfg:
            if quick_gelu is None:
                quick_gelu = bool(tag_cfg.get("quick_gelu", False))
            path = self._resolve_tag(model, pretrained, tag_cfg, quick_gelu)
            preprocess = {k: tag_cfg[k] for k in ("mean", "std", "interpolation", "resize_mode") if k in tag_cfg}
        elif pretrained and os.path.isfile(pretrained):
            path, preprocess = pretrained, {}
        elif pretrained:
            tags = open_clip.list_pretrained_tags_by_model(model)
            raise ValueError(
                f"pretrained={pretrained!r} is neither a pretrained tag of {model} nor a file; "
                f"tags: {', '.join(tags) or 'none'}")
        else:
            raise ValueError(f"give pretrained= (a tag of {model} or a checkpoint file)")
        kwargs = {"force_preprocess_cfg": preprocess} if preprocess else {}
        if quick_gelu:
            kwargs["force_quick_gelu"] = True
        # given a file path, open_clip loads it and never goes to the network
        clip = open_clip.create_model(model, pretrained=path, device="cpu", **kwargs)
        preprocess = dict(getattr(clip.visual, "preprocess_cfg", None) or preprocess)
        try:
            tokenizer = open_clip.get_tokenizer(model)
        except Exception as e:  # HF tokenizers (multilingual models) need their own files
            if is_offline():
                raise MissingWeightsError(_label(model, pretrained), f"tokenizer files of {model}",
                                          _hub_cache(), cause=e) from None
            raise
        return clip, tokenizer, preprocess

    @classmethod
    def _resolve_tag(cls, model: str, tag: str, cfg: dict, quick_gelu: bool) -> str:
        """Path of the checkpoint of open_clip's pretrained tag ``tag``: from
        disk, or downloaded once when downloads are allowed; else
        MissingWeightsError."""
        import open_clip  # deferred: heavy, and only this metric needs it

        label = _label(model, tag)
        if cfg.get("hf_hub"):  # every tag of open_clip 3.x has one, and open_clip prefers it
            return cls._resolve_hf(label, cfg["hf_hub"], quick_gelu)
        what = cfg.get("file") or cfg.get("url") or tag
        if cfg.get("file") and os.path.isfile(cfg["file"]):
            return cfg["file"]
        if is_offline():
            raise MissingWeightsError(label, what, "place given by open_clip's pretrained config")
        try:
            return open_clip.download_pretrained(cfg)
        except Exception as e:
            raise MissingWeightsError(label, what, "place given by open_clip's pretrained config",
                                      cause=e) from None

    @staticmethod
    def _resolve_hf(label: str, hub: str, quick_gelu: bool) -> str:
        """A file of a Hugging Face repo: from the cache only when offline,
        else with one network probe (never huggingface_hub's retry loop)."""
        from open_clip.constants import HF_SAFE_WEIGHTS_NAME, HF_WEIGHTS_NAME

        if hub.endswith("/"):  # open_clip's convention: the repo's default file
            repo, filename = hub.rstrip("/"), HF_WEIGHTS_NAME
        else:
            repo, filename = hub.rsplit("/", 1)
        candidates = [filename]  # open_clip prefers a safetensors twin
        if filename == HF_WEIGHTS_NAME:
            candidates.insert(0, HF_SAFE_WEIGHTS_NAME)
        elif filename.endswith((".bin", ".pth")):
            candidates.insert(0, filename[:-4] + ".safetensors")
        cache = _hub_cache()
        for name in candidates:
            found = hf.try_to_load_from_cache(repo, name, cache_dir=cache)
            if isinstance(found, str) and os.path.isfile(found):
                return found
        where = (f"the Hugging Face cache {cache} (`hf download {repo} {filename}` on a machine with "
                 f"network, then copy the cache over), or pass the file's path as pretrained=")
        if quick_gelu:
            where += " with quick_gelu=True"
        published = hf.hf_hub_url(repo, filename)
        if is_offline():
            raise MissingWeightsError(label, f"{repo}/{filename}", where, url=published)
        try:
            for name in candidates:
                try:
                    hf.get_hf_file_metadata(hf.hf_hub_url(repo, name), timeout=10)
                except hf.errors.EntryNotFoundError:
                    continue
                return hf.hf_hub_download(repo, name, cache_dir=cache)
            raise FileNotFoundError(f"none of {', '.join(candidates)} is in {repo}")
        except Exception as e:  # network errors of every kind, once
            raise MissingWeightsError(label, f"{repo}/{filename}", where, url=published, cause=e) from None

    # ------------------------------------------------------------------ prompts

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def prompts(self, names: Optional[Sequence[str]] = None) -> List[List[str]]:
        """The prompts, one list of templates per embedding row: C rows for
        ``class_confidence``; 2C rows (all "good" classes, then all "bad")
        for ``good_bad``."""
        names = [clean_class_name(n) for n in (self.classes if names is None else names)]
        if self.variant == "class_confidence":
            return [[t.replace("{}", n) for t in self.templates] for n in names]
        return [[t.replace("{quality}", q).replace("{}", n) for t in self.templates]
                for q in QUALITIES for n in names]

    def set_classes(self, classes: Union[None, str, Sequence[str]] = None) -> None:
        """Sets the task's class names and (re)computes their text embeddings
        (cached per class list)."""
        if classes is None or (isinstance(classes, str) and classes.lower() == IMAGENET):
            self.classes_source = IMAGENET
            names = imagenet_class_names()
        elif isinstance(classes, str):
            raise ValueError(f"classes must be a list of names or {IMAGENET!r}, not {classes!r}")
        else:
            self.classes_source = None
            names = [str(c) for c in classes]
            if not names:
                raise ValueError("give at least one class name")
            if self.variant == "class_confidence" and len(names) < 2:
                raise ValueError("class_confidence needs at least two classes")
        num, sha1 = self._expected
        self._expected = (None, None)  # checked once, against the constructor's classes
        if num is not None and num != len(names):
            raise ValueError(f"num_classes={num} but {len(names)} classes given")
        if sha1 is not None and sha1 != classes_digest(names):
            raise ValueError(f"classes do not match classes_sha1={sha1}")
        self.classes = names
        key = tuple(clean_class_name(n) for n in names)
        if key not in self._text_cache:
            self._text_cache[key] = self._encode_prompts(self.prompts(names)).cpu()
        self.text_features = self._text_cache[key].to(self.device)
        self.default_classes = False

    @torch.no_grad()
    def _encode_prompts(self, rows: List[List[str]]) -> torch.Tensor:
        """Unit text embeddings (rows, D): each row's templates averaged."""
        flat = [p for row in rows for p in row]
        out = []
        with _no_autocast(self.device):
            for i in range(0, len(flat), self.batch_text):
                tokens = self.tokenizer(flat[i:i + self.batch_text]).to(self.device)
                out.append(F.normalize(self.model.encode_text(tokens).float(), dim=-1))
        emb = torch.cat(out).view(len(rows), len(self.templates), -1).mean(dim=1)
        return F.normalize(emb, dim=-1)

    # ------------------------------------------------------------------ scoring

    def to(self, device):
        super().to(device)
        self.model.to(self.device)
        self.text_features = self.text_features.to(self.device)
        return self

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        return normalize(images, self.mean, self.std)

    def image_features(self, images: torch.Tensor) -> torch.Tensor:
        """Unit CLIP image embeddings (B, D) of ``images`` in [0, 1]."""
        x = images
        if x.shape[-1] != self.image_size or x.shape[-2] != self.image_size:
            x = F.interpolate(x, size=(self.image_size, self.image_size), mode="bicubic",
                              antialias=True, align_corners=False).clamp(0, 1)
        return F.normalize(self.model.encode_image(self.normalize(x)).float(), dim=-1)

    def logits(self, images: torch.Tensor) -> torch.Tensor:
        """Scaled cosine similarities (B, rows) to the prompt embeddings."""
        return self.scale * self.image_features(images) @ self.text_features.T

    @torch.inference_mode()
    def score(self, images, references=None):
        self._check_batch(images)
        z = self.logits(images.to(self.device))
        if self.variant == "good_bad":
            p = F.softmax(z, dim=1)
            s = p[:, : self.num_classes].sum(dim=1)
        else:
            s = confidence(z, self.statistic)
        return s.clamp(0, 1).double().cpu()

    def describe(self):
        d = {}
        if self.model_cfg is not None:
            d.update(model=None, pretrained=None, model_cfg=self.model_cfg, seed=self.seed)
        else:
            d.update(model=self.model_name, pretrained=self.pretrained)
        d["variant"] = self.variant
        if self.variant == "class_confidence":
            d["statistic"] = self.statistic
        d["templates"] = list(self.templates)
        d["num_classes"] = self.num_classes
        if self.classes_source == IMAGENET:
            d["classes"] = IMAGENET
        elif self.num_classes <= MAX_LISTED_CLASSES:
            d["classes"] = list(self.classes)
        else:
            d["classes_sha1"] = classes_digest(self.classes)
        if self.logit_scale is not None:
            d["logit_scale"] = self.logit_scale
        if self.quick_gelu is not None:
            d["quick_gelu"] = self.quick_gelu
        return d


def _label(model, pretrained) -> str:
    return f"zsclip {model} pretrained={pretrained}"


def _no_autocast(device: torch.device):
    if device.type == "cuda":
        return torch.autocast("cuda", enabled=False)
    return contextlib.nullcontext()

"""The ``fiftyone-dnniqa`` command."""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import warnings
from typing import List, Optional

import fiftyone as fo

from .analysis.report import write_report
from .api import compute_quality
from .app.plugin import install_plugin
from .demo import DEMO_DATASET, DEMO_FRAME_STEP, DEMO_VIDEO_DATASET, DEMO_VIDEO_METRIC, run_demo, run_video_demo
from .metrics import create_metric
from .metrics.catalog import metric_catalog
from .metrics.options import metric_options_with_proxy
from .metrics.registry import unavailable_sources
from .scoring import ShardedRun, delete_quality_run, list_quality_runs, load_quality_run
from .scoring.plan import parse_metric_options


def _cmd_demo(args):
    if args.video:
        if args.metric and len(args.metric) > 1:
            sys.exit("error: the video demo scores one --metric")
        run_video_demo(name=args.name or DEMO_VIDEO_DATASET, metric=(args.metric or [DEMO_VIDEO_METRIC])[0],
                       frame_step=args.frame_step or DEMO_FRAME_STEP, device=args.device)
        return
    if args.frame_step:
        sys.exit("error: --frame-step goes with --video")
    kwargs = {"metrics": args.metric} if args.metric else {}
    run_demo(name=args.name or DEMO_DATASET, device=args.device, **kwargs)


def _cmd_score(args):
    if not fo.dataset_exists(args.dataset):
        sys.exit(f"error: no dataset named '{args.dataset}' (fiftyone datasets list)")
    samples = fo.load_dataset(args.dataset)
    if args.view:
        samples = samples.load_saved_view(args.view)
    metrics = args.metric
    fields = args.field
    if fields and len(fields) != len(metrics):
        sys.exit("error: give one --field per --metric")
    try:
        options = metric_options_with_proxy(metrics, _metric_options(args.options, args.option),
                                            _listed(args.proxy), _listed(args.weights))
    except ValueError as e:
        sys.exit(f"error: {e}")
    try:
        results = compute_quality(
            samples, metrics if len(metrics) > 1 else metrics[0],
            field=(fields if len(metrics) > 1 else fields[0]) if fields else None,
            device=args.device, batch_size=args.batch_size, num_workers=args.num_workers,
            overwrite=args.overwrite, reference_field=args.reference_field, label_field=args.label_field,
            metric_options=options, progress=not args.quiet, shards=args.shards, decode=args.decode,
            frame_step=args.frame_step, low_level=args.low_level,
        )
    except (ValueError, RuntimeError) as e:
        sys.exit(f"error: {e}")
    if isinstance(results, ShardedRun):
        print(f"queued {len(results.operation_ids)} delegated operations for {', '.join(results.fields)}; "
              "start workers with `fiftyone delegated launch` (one per GPU: CUDA_VISIBLE_DEVICES=k) "
              f"and follow them with `fiftyone-dnniqa runs --dataset {args.dataset}`")
        return
    if not isinstance(results, dict):
        results = {results.key: results}
    for r in results.values():
        print(r.summary())
        for sid, reason in list(r.failures.items())[:10]:
            print(f"    {sid}: {reason}")
        if r.num_failed > 10:
            print(f"    ... {r.num_failed - 10} more (field {r.key}_error)")
        for sid, reason in list((getattr(r, "video_failures", None) or {}).items())[:10]:
            print(f"    video {sid}: {reason}")


def _metric_options(as_json: Optional[str], pairs: Optional[List[str]]) -> Optional[dict]:
    """Metric options from ``--options '{...}'`` and repeated ``--option key=value`` (a
    value is read as JSON when it parses, e.g. ``tta=flip``, ``temperature=2``, ``backbone=["a","b"]``)."""
    options = parse_metric_options(as_json) if as_json else {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--option takes key=value, not {pair!r}")
        try:
            options[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            options[key.strip()] = value
    return options or None


def _listed(values: Optional[List[str]]) -> Optional[List[str]]:
    """A repeatable option whose values may each be comma-separated, as one list (or None)."""
    items = [v.strip() for value in values or [] for v in value.split(",") if v.strip()]
    return items or None


def _cmd_list_metrics(args):
    rows = []
    for m in metric_catalog(source=args.source):
        status = _check(m.name) if args.check else m.status
        rows.append([m.name, m.group, "higher" if m.higher_is_better else "lower", status])
    header = ["metric", "kind", "better", "status"]
    widths = [max(len(r[i]) for r in rows + [header]) for i in range(len(header))]
    for r in [header] + rows:
        print("  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip())
    for source, reason in unavailable_sources().items():
        print(f"{source} metrics: unavailable: {reason}")


def _check(name) -> str:
    """Builds metric ``name`` quietly (no download lines, no library warnings): ``ready``,
    or the first line of why not."""
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), \
            contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")
        try:
            create_metric(name)
            return "ready"
        except Exception as e:  # every reason a metric cannot be built here is reported, not raised
            reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            return f"not ready: {reason}"


def _cmd_runs(args):
    if not fo.dataset_exists(args.dataset):
        sys.exit(f"error: no dataset named '{args.dataset}'")
    ds = fo.load_dataset(args.dataset)
    try:
        if args.delete:
            delete_quality_run(ds, args.delete)
            print(f"deleted run '{args.delete}' and its fields")
        elif args.show:
            print(load_quality_run(ds, args.show))
        else:
            for key in list_quality_runs(ds):
                r = load_quality_run(ds, key)
                print(r.summary())
                for sh in getattr(r, "shards", None) or []:
                    print(f"    shard {sh['index']}: {sh['status']}, {sh['num_scored']} scored, "
                          f"{sh['num_failed']} failed (operation {sh['operation_id']})")
    except ValueError as e:
        sys.exit(f"error: {e}")


def _cmd_report(args):
    if not fo.dataset_exists(args.dataset):
        sys.exit(f"error: no dataset named '{args.dataset}'")
    ds = fo.load_dataset(args.dataset)
    out = args.output or f"{args.dataset}-quality.html"
    try:
        write_report(ds, out, fields=args.field, overwrite=args.overwrite, eval_key=args.eval_key)
    except (FileExistsError, ValueError) as e:
        sys.exit(f"error: {e}")
    print(f"wrote {out}")


def _cmd_install_plugin(args):
    path = install_plugin(args.plugins_dir, overwrite=True)
    print(f"installed the plugin in {path}; restart the App to load it")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fiftyone-dnniqa",
        description="Find the images that are hard for deep networks: score image quality "
                    "in FiftyOne datasets with DNN-aligned and conventional (pyiqa) metrics.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("demo", help="build the offline demo dataset and score it",
                       description="Builds a dataset of real photographs shipped with installed "
                                   "packages plus corrupted copies, scores it and prints a table.")
    p.add_argument("--name", help="dataset name (default: dnniqa-demo, with --video dnniqa-video-demo)")
    p.add_argument("--metric", action="append", help="metric to score (repeatable; default: the offline set; "
                                                     f"with --video one metric, default {DEMO_VIDEO_METRIC})")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda (default: %(default)s)")
    p.add_argument("--video", action="store_true",
                   help="the video demo: short videos of the photographs with degradation episodes at known "
                        "frames; prints the low-quality segments found next to the true episodes")
    p.add_argument("--frame-step", type=int, metavar="N",
                   help=f"with --video: score one frame in N (default: {DEMO_FRAME_STEP})")
    p.set_defaults(func=_cmd_demo)

    p = sub.add_parser("score", help="score a dataset with one or more metrics",
                       description="Scores every image of a dataset (or saved view) and stores the "
                                   "scores in a field (default iqa_<metric>). Re-running resumes: "
                                   "only samples without a score are scored.")
    p.add_argument("--dataset", required=True, help="FiftyOne dataset name")
    p.add_argument("--view", help="name of a saved view of the dataset to score")
    p.add_argument("--metric", action="append", required=True,
                   help="metric name (repeatable: each image is decoded once for all); see list-metrics")
    p.add_argument("--field", action="append", help="field for the scores, one per --metric")
    p.add_argument("--reference-field", help="filepath field of reference images (full-reference metrics)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N (default: %(default)s)")
    p.add_argument("--batch-size", type=int, help="images per batch (default: automatic)")
    p.add_argument("--num-workers", type=int, help="decoding processes (default: one per core, up to 4)")
    p.add_argument("--decode", choices=["auto", "workers", "device"], default="auto",
                   help="where JPEGs are decoded: the loader workers, or in batches on the scoring device "
                        "(nvJPEG on CUDA); auto: the device on CUDA (default: %(default)s)")
    p.add_argument("--label-field", help="Classification (or string) field: the task's classes for "
                                         "task-guided metrics (aligned_task, zsclip)")
    p.add_argument("--option", action="append", metavar="KEY=VALUE",
                   help="a metric option (repeatable), e.g. --option tta=flip --option temperature=2")
    p.add_argument("--options", help="metric options as JSON, e.g. '{\"max_side\": 1024}'; with several "
                                     "metrics, one object each: '{\"aligned\": {\"tta\": \"flip\"}}'")
    p.add_argument("--proxy", action="append", metavar="NAME",
                   help="proxy network of the DNN-aligned metrics, e.g. efficientnet_lite0, "
                        "torchvision:mobilenet_v2, timm:<name> (repeatable or comma-separated: an ensemble)")
    p.add_argument("--weights", action="append", metavar="FILE",
                   help="weights file of each --proxy, in the same order (default: the standard cache)")
    p.add_argument("--overwrite", action="store_true", help="rescore samples that already have a score")
    p.add_argument("--frame-step", type=int, metavar="N",
                   help="video datasets: score frames 1, 1+N, 1+2N... in place (default: every frame)")
    p.add_argument("--low-level", type=float, help="video datasets: the quality level of <field>_low_share "
                   "(default: the 20th percentile of quality over the scored frames)")
    p.add_argument("--shards", type=int, help="queue this many delegated operations over disjoint parts "
                                              "of the dataset for `fiftyone delegated launch` workers")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_score)

    p = sub.add_parser("list-metrics", help="list the metric names that score accepts")
    p.add_argument("--source", choices=["dnniqa", "pyiqa"], help="only this package's or pyiqa's")
    p.add_argument("--check", action="store_true", help="build each metric to see whether its weights are on disk")
    p.set_defaults(func=_cmd_list_metrics)

    p = sub.add_parser("runs", help="list, show or delete the quality runs of a dataset")
    p.add_argument("--dataset", required=True, help="FiftyOne dataset name")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--show", metavar="KEY", help="print one run record")
    g.add_argument("--delete", metavar="KEY", help="delete a run and the fields it created")
    p.set_defaults(func=_cmd_runs)

    p = sub.add_parser("report", help="write an HTML report of a dataset's quality runs and how "
                                        "they relate to its evaluations")
    p.add_argument("--dataset", required=True, help="FiftyOne dataset name")
    p.add_argument("--output", help="HTML file to write (default: <dataset>-quality.html)")
    p.add_argument("--field", action="append", help="quality field to include (repeatable; default: all)")
    p.add_argument("--eval-key", help="evaluation to relate quality to (default: the newest, if any)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing file")
    p.set_defaults(func=_cmd_report)

    p = sub.add_parser("install-plugin", help="make this pip-installed package a FiftyOne App plugin")
    p.add_argument("--plugins-dir", help="plugins directory (default: fiftyone's plugins_dir)")
    p.set_defaults(func=_cmd_install_plugin)
    return parser


def main(argv: Optional[List[str]] = None) -> None:
    args = build_parser().parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main()

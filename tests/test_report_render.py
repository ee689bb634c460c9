"""The HTML report, section by section, against independent oracles.

Fast on purpose (mutation testing runs this file for every mutant of
``analysis/report.py``): the quality runs are real ``compute_quality`` runs, but of two
transparent metrics over tiny uniform PNGs whose colours are known, so every number in
the report has an oracle here: numpy for the summaries, scipy and scikit-learn for the
correlations, Wilson intervals, AUROC and the isotonic prior, and hand-written strings
for the markup. Only the bootstrap intervals, which have no closed form, are compared
with the analysis functions that compute them (called here with the resample counts
the report promises), next to a scipy check of the estimate they surround.

The page is read with ``html.parser`` into blocks (headings, paragraphs, tables,
images) rather than searched for substrings.
"""

import base64
import datetime
import html
import io
import math
import os
import re
import tempfile
import time
import uuid
import warnings
from html.parser import HTMLParser

import fiftyone as fo
import numpy as np
import pytest
import scipy.stats
from PIL import Image
from sklearn.isotonic import IsotonicRegression
from sklearn.metrics import roc_auc_score

import fiftyone_dnniqa as dq
from fiftyone_dnniqa.analysis import report
from fiftyone_dnniqa.analysis.correlation import rank_fields
from fiftyone_dnniqa.analysis.grouping import group_table
from fiftyone_dnniqa.analysis.prior import PerformancePrior, heldout_error
from fiftyone_dnniqa.analysis.report_answers import MAX_THUMBS, thumbnail_base64
from fiftyone_dnniqa.analysis.report import (
    performance_section,
    render_report,
    safe_join,
    write_report,
)
from fiftyone_dnniqa.metrics.base import InputSpec, QualityMetric

# ---------------------------------------------------------------------------
# Two transparent metrics
# ---------------------------------------------------------------------------


class MeanLevel(QualityMetric):
    """Mean of the red and green channels: the gray level of the test images."""

    name = "mean<level>"  # a metric name the report must escape
    input_spec = InputSpec(resize=8, crop=8)

    def score(self, images, references=None):
        return images[:, :2].mean(dim=(1, 2, 3)).double()

    def describe(self):
        return {"channels": "<rg>"}


class Blueness(QualityMetric):
    """Mean of the blue channel; lower is better."""

    name = "blueness"
    higher_is_better = False
    input_spec = InputSpec(resize=8, crop=8)

    def score(self, images, references=None):
        return images[:, 2].mean(dim=(1, 2)).double()


# ---------------------------------------------------------------------------
# The data: 84 readable uniform images with known (level, level, blue) colours and
# one unreadable file; correctness depends mostly on blue, a little on level
# ---------------------------------------------------------------------------

N = 84
_rng = np.random.default_rng(11)
LEVEL = 30 + 2 * _rng.permutation(N)
BLUE = 20 + 2 * _rng.permutation(N)
_score = -scipy.stats.rankdata(BLUE) + 0.4 * scipy.stats.rankdata(LEVEL) + _rng.normal(0, 12, N)
CORRECT = _score > np.quantile(_score, 0.4)
CORRECT[80:] = False  # the class with four samples is always wrong
CLASSES = [f"c{j:02d}" for j in range(16)]
CLASSES[5] = "<b>c05</b>"  # a label the report must escape
GT = [CLASSES[i % 16] for i in range(80)] + ["z_four"] * 4
TAGS = ([["night"]] * 5 + [["night", "<b>fog</b>"]] * 5 + [["<b>fog</b>"]] * 3 + [["it's \"q\""]]
        + [[]] * (N - 14))
#: fields, in the report's order, and their direction
HIB = {"blueness": False, "level": True}
#: resamples the report uses: rank_fields and the prior 500, the group tables at most 200
N_BOOT = 500


def _png(path, rgb):
    Image.new("RGB", (8, 8), rgb).save(path)
    return str(path)


#: bump when the data below change: the datasets are kept (see _shared) under this version
VERSION = 1


def _shared(name, build):
    """The persistent dataset ``name``, built by ``build(folder)`` once per database.

    Mutation testing forks one test process per mutant onto one throw-away database
    (conftest's); building the datasets once there, not once per mutant, keeps each run
    short. A process that finds the dataset loads it. Building happens under a unique
    name and ends with a rename, so the name only ever holds a complete dataset (a
    process that loses the race drops its copy).
    """
    full = f"{name} v{VERSION}"
    if fo.dataset_exists(full):
        return fo.load_dataset(full)
    folder = tempfile.mkdtemp(prefix="report-render-", dir=os.path.dirname(os.environ["FIFTYONE_DATABASE_DIR"]))
    ds = build(folder)
    ds.persistent = True
    try:
        ds.name = full
    except Exception:  # another process built it meanwhile
        ds.delete()
        return fo.load_dataset(full)
    return ds


def _build_main(folder):
    paths = [_png(os.path.join(folder, f"s{i:03d}.png"), (int(LEVEL[i]), int(LEVEL[i]), int(BLUE[i])))
             for i in range(N)]
    bad = os.path.join(folder, "bad <b>.png")
    with open(bad, "wb") as f:
        f.write(b"this is not an image\n")
    paths.append(bad)
    gts = GT + [CLASSES[0]]  # the unreadable sample is labelled (and predicted right)
    correct = list(CORRECT) + [True]
    samples = [fo.Sample(filepath=p, tags=list(TAGS[i]) if i < N else [],
                         ground_truth=fo.Classification(label=g),
                         predictions=fo.Classification(label=g if ok else "wrong", confidence=0.5))
               for i, (p, g, ok) in enumerate(zip(paths, gts, correct))]
    ds = fo.Dataset(f"building {uuid.uuid4().hex}")
    ds.add_samples(samples, progress=False)
    bad_id = ds.values("id")[-1]
    # level scores everything (one failure); blueness only the readable images (none)
    dq.compute_quality(ds, MeanLevel(), field="level", num_workers=0, device="cpu", progress=False)
    dq.compute_quality(ds.exclude([bad_id]), Blueness(), field="blueness", num_workers=0, device="cpu",
                       progress=False)
    ds.limit(39).evaluate_classifications("predictions", gt_field="ground_truth", eval_key="eval39")
    ds.limit(40).evaluate_classifications("predictions", gt_field="ground_truth", eval_key="eval40")
    ds.evaluate_classifications("predictions", gt_field="ground_truth", eval_key="eval")
    return ds


def _grays(folder):
    return [_png(os.path.join(folder, f"gray{v}.png"), (v, v, v)) for v in (10, 20, 30, 40, 50)]


def _build_many(folder):
    """205 scored samples (five gray files over and over) and 22 unreadable ones."""
    grays = _grays(folder)
    junk = []
    for k in range(22):
        junk.append(os.path.join(folder, f"junk{k:02d}.png"))
        with open(junk[-1], "wb") as f:
            f.write(b"junk")
    many = fo.Dataset(f"building {uuid.uuid4().hex}")
    many.add_samples([fo.Sample(filepath=grays[k % 5]) for k in range(205)]
                     + [fo.Sample(filepath=p) for p in junk], progress=False)
    dq.compute_quality(many, MeanLevel(), field="level", num_workers=0, device="cpu", progress=False)
    dq.compute_quality(many.limit(205), Blueness(), field="blueness", num_workers=0, device="cpu",
                       progress=False)
    return many


def _build_plain(folder):
    grays = _grays(folder)
    plain = fo.Dataset(f"building {uuid.uuid4().hex}")
    plain.add_samples([fo.Sample(filepath=grays[0]), fo.Sample(filepath=grays[1])], progress=False)
    return plain


def _build_unlabelled(folder):
    """Six classified samples without ground truth."""
    grays = _grays(folder)
    ds = fo.Dataset(f"building {uuid.uuid4().hex}")
    ds.add_samples([fo.Sample(filepath=grays[k % 5], predictions=fo.Classification(label="cat"))
                    for k in range(6)], progress=False)
    ds.add_sample_field("ground_truth", fo.EmbeddedDocumentField, embedded_doc_type=fo.Classification)
    dq.compute_quality(ds, MeanLevel(), field="level", num_workers=0, device="cpu", progress=False)
    ds.evaluate_classifications("predictions", gt_field="ground_truth", eval_key="eval")
    return ds


def _build_detected(folder):
    """Six samples with a detection evaluation."""
    grays = _grays(folder)
    ds = fo.Dataset(f"building {uuid.uuid4().hex}")
    box = [0.1, 0.1, 0.5, 0.5]
    ds.add_samples([fo.Sample(filepath=grays[k % 5],
                              ground_truth=fo.Detections(detections=[fo.Detection(label="cat", bounding_box=box)]),
                              predictions=fo.Detections(detections=[fo.Detection(
                                  label="cat" if k % 2 else "dog", bounding_box=box, confidence=0.9)]))
                    for k in range(6)], progress=False)
    dq.compute_quality(ds, MeanLevel(), field="level", num_workers=0, device="cpu", progress=False)
    ds.evaluate_detections("predictions", gt_field="ground_truth", eval_key="det")
    return ds


@pytest.fixture(scope="module")
def plain():
    """Two samples, no runs, no evaluation; a name that is not ASCII."""
    return _shared("plain \u00e9t\u00e9", _build_plain)


@pytest.fixture(scope="module")
def many():
    return _shared("many", _build_many)


@pytest.fixture(scope="module")
def world(plain, many):
    """The datasets the report tests read (building them calls nothing of the report)."""
    ds = _shared("<b>q</b> report", _build_main)
    assert dq.list_quality_runs(ds) == list(HIB)
    paths = ds.values("filepath")
    return {"ds": ds, "bad_id": ds.values("id")[-1], "bad_path": paths[-1], "paths": paths[:-1],
            "many": many, "plain": plain}


# ---------------------------------------------------------------------------
# Reading the page
# ---------------------------------------------------------------------------


class _Blocks(HTMLParser):
    """The page as blocks, in order: ``(tag, text)`` for title, style, h1-h3 and p
    (inline markup flattened), ``("table", header, rows)``, ``("img", attrs)``, and
    ``("stray text", text)`` for text outside all of them (there must be none)."""

    TEXT = ("title", "style", "h1", "h2", "h3", "p", "li", "figcaption")

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.blocks, self._text, self._kind, self._table, self._row, self._cell = [], None, None, None, None, None

    def handle_starttag(self, tag, attrs):
        if tag in self.TEXT:
            self._kind, self._text = tag, []
        elif tag == "table":
            self._table = {"header": [], "rows": []}
        elif tag == "tr":
            self._row = []
        elif tag in ("td", "th"):
            self._cell = []
        elif tag == "img":
            self.blocks.append(("img", dict(attrs)))

    def handle_endtag(self, tag):
        if tag in self.TEXT and self._text is not None:
            self.blocks.append((self._kind, "".join(self._text)))
            self._text = None
        elif tag in ("td", "th"):
            self._row.append((tag, "".join(self._cell)))
            self._cell = None
        elif tag == "tr":
            if all(kind == "th" for kind, _ in self._row):
                self._table["header"] = [c for _, c in self._row]
            else:
                self._table["rows"].append([c for _, c in self._row])
            self._row = None
        elif tag == "table":
            self.blocks.append(("table", self._table["header"], self._table["rows"]))
            self._table = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)
        elif self._text is not None:
            self._text.append(data)
        elif data.strip():
            self.blocks.append(("stray text", data))


def blocks(page):
    p = _Blocks()
    p.feed(page)
    p.close()
    assert not [b for b in p.blocks if b[0] == "stray text"], [b for b in p.blocks if b[0] == "stray text"]
    return p.blocks


def outline(bl):
    """Block kinds, with the text of headings (what follows what)."""
    return [b[0] if b[0] in ("table", "img", "p") else (b[0], b[1]) for b in bl]


def after(bl, heading, n=1):
    """The ``n`` blocks after the heading whose text is ``heading``."""
    idx = [i for i, b in enumerate(bl) if b[0] in ("h2", "h3") and b[1] == heading]
    assert len(idx) == 1, (heading, [b[1] for b in bl if b[0] in ("h2", "h3")])
    return bl[idx[0] + 1: idx[0] + 1 + n]


def table_after(bl, heading):
    (b,) = after(bl, heading)
    assert b[0] == "table", b
    return b[1], b[2]


def png_size(src):
    prefix = "data:image/png;base64,"
    assert src.startswith(prefix)
    data = base64.b64decode(src[len(prefix):], validate=True)
    with Image.open(io.BytesIO(data)) as im:
        assert im.format == "PNG"
        return im.size


def short(v):
    """The one number format, written out: three decimals; "n/a" when missing."""
    return "n/a" if v is None or not math.isfinite(v) else f"{v:.3f}"


def parse_ci(cell):
    """``"est [lo, hi]"`` -> floats; ``"n/a"`` (with or without its reason) -> NaNs."""
    if cell == "n/a" or cell.startswith("n/a ("):
        return (math.nan,) * 3
    m = re.fullmatch(r"(\S+) \[(\S+), (\S+)\]", cell)
    assert m, cell
    return tuple(float(x) for x in m.groups())


def close(cell, want, tol=6e-4):
    got = float(cell)
    assert abs(got - want) <= tol, (cell, want)


# ---------------------------------------------------------------------------
# Oracles
# ---------------------------------------------------------------------------


def _floats(values):
    return np.array([np.nan if v is None else float(v) for v in values], float)


def _pairs(q, t):
    m = np.isfinite(q) & np.isfinite(t)
    return q[m], t[m]


def _wilson(t):
    ci = scipy.stats.binomtest(int(t.sum()), len(t)).proportion_ci(0.95, method="wilson")
    return ci.low, ci.high


def _check_mean_target(cell, t):
    est, lo, hi = parse_ci(cell)
    wl, wh = _wilson(t)
    assert abs(est - t.mean()) <= 6e-4 and abs(lo - wl) <= 6e-4 and abs(hi - wh) <= 6e-4, (cell, t.mean(), wl, wh)


def _spearman(q, t, hib):
    if len(q) < 3 or np.all(t == t[0]) or np.all(q == q[0]):
        return math.nan
    return scipy.stats.spearmanr(q if hib else -q, t).statistic


def _deciles(q, t, bins=10):
    """(lo, hi, q in bin, t in bin) of equal-count bins, [lo, hi) but the last [lo, hi]."""
    q, t = _pairs(q, t)
    edges = np.unique(np.quantile(q, np.linspace(0, 1, bins + 1)))
    k = len(edges) - 1
    out = []
    for i in range(k):
        sel = (q >= edges[i]) & ((q < edges[i + 1]) if i < k - 1 else (q <= edges[i + 1]))
        out.append((edges[i], edges[i + 1], q[sel], t[sel]))
    return out


def _check_decile_table(header, rows, q, t):
    assert header == ["quality bin", "n", "mean quality", "mean target"]
    want = _deciles(q, t)
    assert len(rows) == len(want) == 10
    for row, (lo, hi, qb, tb) in zip(rows, want):
        m = re.fullmatch(r"\[(\S+), (\S+)\]", row[0])
        assert m, row
        close(m.group(1), lo)
        close(m.group(2), hi)
        assert row[1] == str(len(qb))
        close(row[2], qb.mean())
        _check_mean_target(row[3], tb)


def _check_group_table(header, rows, q, t, groups, hib, n_boot, min_n=1, by_target=False, limit=None):
    """A per-class or per-tag table: n, mean quality (as stored), mean target with its
    Wilson interval and the within-group Spearman (oriented) checked here; the
    bootstrap interval around it against group_table with ``n_boot`` resamples."""
    assert header == ["group", "n", "mean quality", "mean target", "spearman"]
    m = np.isfinite(q) & np.isfinite(t) & np.array([g is not None for g in groups])
    g = np.array(groups, dtype=object)[m]
    q, t = q[m], t[m]
    want = []
    for label in sorted(set(g)):
        sel = g == label
        if sel.sum() >= min_n:
            want.append((label, q[sel], t[sel]))
    if by_target:
        want.sort(key=lambda w: w[2].mean())  # stable: ties stay in label order
    if limit is not None:
        want = want[:limit]
    assert [r[0] for r in rows] == [w[0] for w in want]
    lib = {r.group: r.to_row()["spearman"]
           for r in group_table(q, t, g, higher_is_better=hib, n_boot=n_boot, min_n=min_n)}
    for row, (label, qg, tg) in zip(rows, want):
        assert row[1] == str(len(qg))
        close(row[2], qg.mean())
        _check_mean_target(row[3], tg)
        rho = _spearman(qg, tg, hib)
        est = parse_ci(row[4])[0]
        assert (math.isnan(rho) and math.isnan(est)) or abs(est - rho) <= 6e-4, (label, row[4], rho)
        assert row[4] == lib[label]
    return [w[0] for w in want]


def _check_ranking(header, rows, qualities, t, n_boot):
    """Fields best first by Spearman (scipy), with Kendall, Pearson and AUROC (scipy,
    scikit-learn); cells as rank_fields writes them with ``n_boot`` resamples."""
    assert header == ["field", "spearman", "kendall", "pearson", "auroc", "n", "missing"]
    rho = {}
    for f, (q, hib) in qualities.items():
        qq, tt = _pairs(q if hib else -q, t)
        rho[f] = scipy.stats.spearmanr(qq, tt).statistic
        row = next(r for r in rows if r[0] == f)
        close(parse_ci(row[1])[0], rho[f])
        close(parse_ci(row[2])[0], scipy.stats.kendalltau(qq, tt).statistic)
        close(parse_ci(row[3])[0], scipy.stats.pearsonr(qq, tt).statistic)
        close(parse_ci(row[4])[0], roc_auc_score(tt, qq))
        assert row[5:] == [str(len(qq)), str(int(len(q) - len(qq)))]
        for cell in row[1:5]:
            est, lo, hi = parse_ci(cell)
            assert lo <= est <= hi
    assert [r[0] for r in rows] == sorted(rho, key=lambda f: -rho[f])
    lib = [[str(v) for v in r.to_row().values()] for r in rank_fields(qualities, t, n_boot=n_boot)]
    assert rows == lib
    return rows[0][0]


def _check_prior(bl, best, q, t, hib, n_boot):
    """The prior table: the held-out row as heldout_error gives it (its split is random),
    the fitted-on-all row against scikit-learn's isotonic fit predicted over every
    scored sample of the view."""
    text, (kind, header, rows) = after(bl, f"Performance prior from {best}", 2)
    assert text == ("p", PRIOR_TEXT) and kind == "table"
    assert header == ["split", "n", "predicted accuracy", "95% interval", "actual", "absolute error"]
    held = heldout_error(q, t, higher_is_better=hib, n_boot=n_boot).overall
    qq, tt = _pairs(q, t)
    assert held["n"] == round(len(qq) / 2)
    assert rows[0] == ["held-out half", str(held["n"]), short(held["predicted"]),
                       f"[{short(held['ci_low'])}, {short(held['ci_high'])}]", short(held["actual"]),
                       short(abs(held["predicted"] - held["actual"]))]
    iso = IsotonicRegression(increasing=hib, out_of_bounds="clip").fit(qq, tt)
    scored = q[np.isfinite(q)]
    mean = float(iso.predict(scored).mean())
    est = PerformancePrior.fit(q, t, higher_is_better=hib).predict_accuracy(q, n_boot=n_boot)
    assert abs(est.mean - mean) < 1e-9
    assert est.ci_low < mean < est.ci_high
    assert rows[1] == ["all (fitted on all)", str(len(scored)), short(mean),
                       f"[{short(est.ci_low)}, {short(est.ci_high)}]", short(np.nanmean(t)), ""]


PRIOR_TEXT = ("A monotone (isotonic) map from quality to expected accuracy, fitted on one random half "
              "and checked on the other: it predicts the accuracy of new, unevaluated images from "
              "their quality alone (dq.PerformancePrior).")


# ---------------------------------------------------------------------------
# Figures: what the embedded PNGs are drawn from
# ---------------------------------------------------------------------------


@pytest.fixture
def figures(monkeypatch):
    """Every figure the report draws (recorded as it is made). The report must leave
    pyplot alone: the caller's backend (SVG here) and open figure stay as they were.
    Other defaults (resolution, file format, font size) are changed so the report's own
    settings show."""
    import matplotlib
    import matplotlib.pyplot as plt

    plt.close("all")
    matplotlib.use("svg")
    mine = plt.figure()
    monkeypatch.setitem(matplotlib.rcParams, "figure.dpi", 72)
    monkeypatch.setitem(matplotlib.rcParams, "savefig.format", "svg")
    monkeypatch.setitem(matplotlib.rcParams, "font.size", 14)
    made = []

    class Recorded(plt.Figure):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            made.append(self)

    monkeypatch.setattr(plt, "Figure", Recorded)
    yield made
    assert matplotlib.get_backend().lower() == "svg"
    assert plt.get_fignums() == [mine.number]
    plt.close("all")
    matplotlib.use("agg")


def _check_tight(ax):
    """Laid out tightly: the axes are not where the default margins put them."""
    import matplotlib

    pos = ax.get_position()
    assert abs(pos.x0 - matplotlib.rcParams["figure.subplot.left"]) > 0.01
    assert abs(pos.x1 - matplotlib.rcParams["figure.subplot.right"]) > 0.01


def _check_histogram(fig, src, values, title):
    assert png_size(src) == (500, 260)
    assert tuple(fig.get_size_inches()) == (5, 2.6)  # and 100 dpi: 500 x 260 pixels
    (ax,) = fig.axes
    assert ax.get_title() == title and ax.title.get_fontsize() == 10
    assert ax.get_ylabel() == "samples"
    bins = min(40, max(5, len(values) // 5))
    counts, edges = np.histogram(values, bins=bins)
    assert [p.get_height() for p in ax.patches] == counts.tolist()
    assert np.allclose([p.get_x() for p in ax.patches], edges[:-1])
    import matplotlib.colors

    assert all(p.get_facecolor() == matplotlib.colors.to_rgba("#4c72b0") for p in ax.patches)
    _check_tight(ax)
    return bins


def _check_curve(fig, src, qualities, t, kind):
    assert png_size(src) == (600, 320)
    assert tuple(fig.get_size_inches()) == (6, 3.2)  # and 100 dpi: 600 x 320 pixels
    (ax,) = fig.axes
    assert ax.get_title() == f"{kind} per quality decile" and ax.title.get_fontsize() == 10
    assert ax.get_xlabel() == "quality decile, worst to best (% of samples)"
    assert ax.get_ylabel() == "performance"
    assert [ln.get_label() for ln in ax.lines] == list(qualities)
    assert [tx.get_text() for tx in ax.get_legend().get_texts()] == list(qualities)
    assert all(tx.get_fontsize() == 7 for tx in ax.get_legend().get_texts())
    assert len(ax.collections) == len(qualities)
    for line, band, (f, (q, hib)) in zip(ax.lines, ax.collections, qualities.items()):
        bins = _deciles(q if hib else -q, t)
        k = len(bins)
        assert np.allclose(line.get_xdata(), np.arange(1, k + 1) * 100 / k)
        assert np.allclose(line.get_ydata(), [tb.mean() for _, _, _, tb in bins])
        assert line.get_marker() == "o" and line.get_markersize() == 3
        assert band.get_alpha() == 0.15
        ys = band.get_paths()[0].vertices[:, 1]
        for _, _, _, tb in bins:
            lo, hi = _wilson(tb)
            assert np.isclose(ys, lo, atol=1e-9).any() and np.isclose(ys, hi, atol=1e-9).any()
    _check_tight(ax)


# ---------------------------------------------------------------------------
# Helpers of the module
# ---------------------------------------------------------------------------


def test_tables_escape_every_cell_and_leave_missing_cells_blank():
    assert report._esc("<a href='x'>\"&\"</a>") == "&lt;a href=&#x27;x&#x27;&gt;&quot;&amp;&quot;&lt;/a&gt;"
    assert report._esc(3) == "3"
    assert report._table(["a<", "b"], [[1, "<i>"], ["'", None]]) == (
        "<table><thead><tr><th>a&lt;</th><th>b</th></tr></thead><tbody>"
        "<tr><td>1</td><td>&lt;i&gt;</td></tr><tr><td>&#x27;</td><td>None</td></tr></tbody></table>")
    assert report._rows_table([]) == "<p>none</p>"
    assert report._rows_table([{"x": 1, "y": "<"}, {"x": 2}]) == (
        "<table><thead><tr><th>x</th><th>y</th></tr></thead><tbody>"
        "<tr><td>1</td><td>&lt;</td></tr><tr><td>2</td><td></td></tr></tbody></table>")


def test_safe_join_accepts_plain_names_only(tmp_path, monkeypatch):
    root = os.path.realpath(tmp_path)
    assert safe_join(str(tmp_path), "report.html") == os.path.join(root, "report.html")
    assert safe_join(str(tmp_path), "..report.html") == os.path.join(root, "..report.html")
    assert safe_join(str(tmp_path), "a\\b.html") == os.path.join(root, "a\\b.html")  # a plain name on POSIX
    for bad in ("", ".", "..", "/etc/passwd", "../x.html", "a/b.html", "x\x00.html", str(tmp_path / "r.html")):
        with pytest.raises(ValueError, match=r"^'.*' is not a plain file name$"):
            safe_join(str(tmp_path), bad)
    (tmp_path / "link.html").symlink_to(tmp_path.parent / "elsewhere.html")
    with pytest.raises(ValueError, match=re.escape(f"'link.html' would be written outside {tmp_path}")):
        safe_join(str(tmp_path), "link.html")
    # where the platform has a second separator, it is refused too
    monkeypatch.setattr(os, "altsep", "\\")
    with pytest.raises(ValueError, match="is not a plain file name"):
        safe_join(str(tmp_path), "a\\b.html")
    assert safe_join(str(tmp_path), "report.html") == os.path.join(root, "report.html")


# ---------------------------------------------------------------------------
# Pages
# ---------------------------------------------------------------------------

HEAD = ("<!DOCTYPE html><html><head><meta charset='utf-8'>\n"
        "<title>Image quality report: {name}</title>\n"
        "<style>body{{font-family:sans-serif;max-width:960px;margin:2em auto;color:#222}}"
        "table{{border-collapse:collapse;margin:.5em 0 1.5em}}td,th{{border:1px solid #ccc;"
        "padding:3px 8px;font-size:13px;text-align:left}}th{{background:#f3f3f3}}"
        "code{{background:#f3f3f3;padding:1px 4px}}.thumbs{{display:flex;flex-wrap:wrap;gap:8px}}"
        "figure{{margin:0;width:170px;font-size:12px}}figure small{{color:#777;word-break:break-all}}"
        "</style></head><body>\n"
        "<h1>Image quality report: {name}</h1>\n"
        "<p>{n} samples; generated {when} UTC by fiftyone-dnniqa.</p>\n")

NO_EVALUATION = (
    "the dataset has no classification or detection evaluation. Run an evaluation with an eval_key "
    "first, e.g. dataset.evaluate_classifications('predictions', gt_field='ground_truth', "
    "eval_key='eval') or dataset.evaluate_detections('predictions', gt_field='ground_truth', "
    "eval_key='eval').")


def _stamp(page):
    m = re.search(r"generated (\d{4}-\d\d-\d\d \d\d:\d\d) UTC by", page)
    assert m, page[:1000]
    return m.group(1)


def test_a_dataset_without_runs(plain, monkeypatch):
    """The whole page, character for character; the time is UTC whatever the local zone."""
    monkeypatch.setenv("TZ", "Etc/GMT+5")
    time.tzset()
    try:
        before = datetime.datetime.now(datetime.timezone.utc).replace(second=0, microsecond=0)
        page = render_report(plain)
        now = datetime.datetime.now(datetime.timezone.utc)
    finally:
        monkeypatch.undo()
        time.tzset()
    when = _stamp(page)
    stamp = datetime.datetime.strptime(when, "%Y-%m-%d %H:%M").replace(tzinfo=datetime.timezone.utc)
    assert before <= stamp <= now
    name = html.escape(plain.name)
    assert page == HEAD.format(name=name, n=2, when=when) + (
        "<p>This dataset has no quality runs yet.</p>\n</body></html>")


def test_write_report(plain, many, tmp_path, monkeypatch):
    path = str(tmp_path / "new" / "deeper" / "r.html")
    assert write_report(plain, path) == path
    first = open(path, encoding="utf-8").read()
    assert "This dataset has no quality runs yet." in first
    with pytest.raises(FileExistsError, match=re.escape(f"{path} exists; pass overwrite=True")):
        write_report(plain, path)
    open(path, "w").write("old")
    with pytest.raises(FileExistsError):
        write_report(plain, path, overwrite=False)
    assert open(path).read() == "old"
    # UTF-8 whatever the locale's encoding (here ASCII)
    import locale

    saved = locale.setlocale(locale.LC_CTYPE)
    locale.setlocale(locale.LC_CTYPE, "C")
    try:
        assert write_report(plain, path, overwrite=True) == path
    finally:
        locale.setlocale(locale.LC_CTYPE, saved)
    page = open(path, encoding="utf-8").read()
    assert page.startswith("<!DOCTYPE html>") and "plain \u00e9t\u00e9" in page
    # a bare file name goes to the working directory
    monkeypatch.chdir(tmp_path)
    assert write_report(plain, "here.html") == "here.html"
    assert (tmp_path / "here.html").read_text(encoding="utf-8").endswith("</body></html>")
    # fields and eval_key reach the page
    view = many.select(many.values("id")[:2])
    page = open(write_report(view, str(tmp_path / "f.html"), fields=["blueness"], eval_key="missing"),
                encoding="utf-8").read()
    assert "<code>blueness</code>" in page and "<code>level</code>" not in page
    assert "no evaluation &#x27;missing&#x27; on this dataset." in page


def test_unknown_fields_are_refused(plain):
    with pytest.raises(ValueError, match="No quality run 'nope'"):
        render_report(plain, fields=["nope"])


def test_many_samples_many_failures_and_few_scores(many, figures):
    page = render_report(many, fields=["level"])
    bl = blocks(page)
    by_path = dict(zip(many.values("id"), many.values("filepath")))
    src, ok, nxt = _field_checks(bl, many, many, "level", 10, by_path)
    run = dq.load_quality_run(many, "level")
    assert run.num_failed == 22 and len(bl[nxt - 1][2]) == 20  # the first 20 failures
    assert bl[nxt:] == [("h2", "Quality versus performance"), ("p", NO_EVALUATION)]
    assert _check_histogram(figures[0], src, ok, "level (mean<level>)") == 40
    assert "blueness" not in page

    # a view with two scored samples and three unreadable ones: NaN scores are not "worst"
    ids = many.values("id")
    view = many.select(ids[:2] + ids[-3:], ordered=True)
    page = render_report(view, fields=["level"])
    bl = blocks(page)
    src, ok, _ = _field_checks(bl, many, view, "level", 10, dict(zip(view.values("id"), view.values("filepath"))))
    assert len(ok) == 2 and ("h3", "2 lowest-quality images") in bl
    assert _check_histogram(figures[1], src, ok, "level (mean<level>)") == 5
    # no failures recorded, no failures table
    page = render_report(view, fields=["blueness"])
    assert "Could not score" not in page and "<h3>2 lowest-quality images</h3>" in page


def _field_checks(bl, ds, view, field, worst, failures_by_path):
    """The section of one field: header, run table, summary, histogram, lowest-quality
    samples and failures, against the run record and numpy."""
    run = dq.load_quality_run(ds, field)
    metric = run.config.metric
    better = "higher" if HIB[field] else "lower"
    h2 = [i for i, b in enumerate(bl) if b == ("h2", f"{field}: {metric} ({better} is better)")]
    assert len(h2) == 1, field
    i = h2[0]
    values = _floats(view.values(field))
    ok = values[np.isfinite(values)]
    options = {"mean<level>": "channels: <rg>", "blueness": ""}[metric]  # by hand
    assert bl[i + 1] == ("table", ["status", "scored", "failed", "with scores", "missing in view", "options",
                                   "device", "seconds"],
                         [[run.status, str(run.num_scored), str(run.num_failed), str(run.num_with_scores),
                           str(len(values) - len(ok)), options, "cpu", f"{run.elapsed_s:.3f}"]])
    qs = np.quantile(ok, [0, 0.05, 0.5, 0.95, 1])
    assert bl[i + 2] == ("table", ["n", "mean", "min", "5%", "median", "95%", "max"],
                         [[str(len(ok)), short(ok.mean())] + [short(v) for v in qs]])
    assert bl[i + 3][0] == "img" and bl[i + 3][1]["alt"] == f"{field} distribution"
    want = _worst(view, field, worst)
    assert bl[i + 4] == ("h3", f"{len(want)} lowest-quality images")
    nxt = i + 5
    for path, caption in want:  # a thumbnail of the file, then its caption
        img = bl[nxt]
        assert img[0] == "img" and img[1]["alt"] == path, img
        assert img[1]["src"].startswith("data:image/jpeg;base64,")
        with Image.open(io.BytesIO(base64.b64decode(img[1]["src"].split(",", 1)[1]))) as thumb:
            with Image.open(path) as full:
                assert max(thumb.size) == min(160, max(full.size))
        assert bl[nxt + 1] == ("figcaption", caption)
        nxt += 2
    if run.failures:
        assert bl[nxt] == ("h3", f"Could not score ({run.num_failed})")
        rows = [[failures_by_path.get(sid, sid), reason] for sid, reason in list(run.failures.items())[:20]]
        assert all(reason for _, reason in rows)
        assert bl[nxt + 1] == ("table", ["filepath", "reason"], rows)
        nxt += 2
    return bl[i + 3][1]["src"], ok, nxt


def _worst(view, field, k):
    """(file path, caption) of the ``k`` lowest-quality images, worst first, by numpy."""
    cols = [view.values(p) for p in ("filepath", field)]
    labels = ([(lf, view.values(f"{lf}.label")) for lf in ("ground_truth", "predictions")]
              if "eval" in view.list_evaluations() else [])
    values = _floats(cols[1])
    order = sorted(np.flatnonzero(np.isfinite(values)), key=lambda j: values[j] if HIB[field] else -values[j])
    return [(cols[0][j], f"{field} {short(values[j])}" + "".join(f"{lf}: {v[j]}" for lf, v in labels) + cols[0][j])
            for j in order[:k]]


def _qualities(view, fields):
    return {f: (_floats(view.values(f)), HIB[f]) for f in fields}


def test_the_report_of_a_dataset(world, figures):
    ds = world["ds"]
    page = render_report(ds)
    bl = blocks(page)
    name = ds.name
    assert page.startswith(HEAD.format(name=html.escape(name), n=N + 1, when=_stamp(page)))
    assert page.endswith("\n</body></html>")
    # nothing from the dataset comes through as markup
    for raw in ("<b>", "<level>", "<rg>", "it's"):
        assert raw not in page
    for escaped in ("&lt;b&gt;q&lt;/b&gt; report", "mean&lt;level&gt;", "channels: &lt;rg&gt;",
                    "bad &lt;b&gt;.png", "&lt;b&gt;fog&lt;/b&gt;,night", "it&#x27;s &quot;q&quot;",
                    "&lt;b&gt;c05&lt;/b&gt;"):
        assert escaped in page, escaped
    assert "<h2><code>level</code>: mean&lt;level&gt; (higher is better)</h2>" in page
    assert "<h2><code>blueness</code>: blueness (lower is better)</h2>" in page

    by_path = dict(zip(ds.values("id"), ds.values("filepath")))
    hist = {}
    for field in HIB:
        src, ok, _ = _field_checks(bl, ds, ds, field, 10, by_path)
        hist[field] = (src, ok)
    # the failures table names the unreadable file by path
    assert table_after(bl, "Could not score (1)") == (["filepath", "reason"], [
        [world["bad_path"], dq.load_quality_run(ds, "level").failures[world["bad_id"]]]])
    # lowest quality: the darkest images for level, the bluest for blueness (known colours)
    paths = world["paths"]
    for heading, order in (("level: mean<level> (higher is better)", np.argsort(LEVEL)),
                           ("blueness: blueness (lower is better)", np.argsort(-BLUE))):
        i = bl.index(("h2", heading))
        shown = [b[1]["alt"] for b in bl[i + 5:i + 25] if b[0] == "img"]
        assert shown == [paths[k] for k in order[:10]]

    # figures: two histograms, then the curve
    assert len(figures) == 3
    for fig, field in zip(figures, HIB):
        src, ok = hist[field]
        metric = dq.load_quality_run(ds, field).config.metric
        assert _check_histogram(fig, src, ok, f"{field} ({metric})") == 16

    # the performance section
    t = _floats(ds.values("eval"))
    perf = bl.index(("h2", "Quality versus performance: evaluation eval (correct)"))
    assert "<h2>Quality versus performance: evaluation <code>eval</code> (correct)</h2>" in page
    assert bl[perf + 1] == ("p", f"classification evaluation of predictions against ground_truth; mean correct "
                                 f"{short(np.nanmean(t))} over {N + 1} samples. Spearman is primary; "
                                 "intervals are bootstrap 95%.")
    qualities = _qualities(ds, HIB)
    assert outline(bl[perf:]) == [
        ("h2", "Quality versus performance: evaluation eval (correct)"), "p",
        ("h3", "Which quality field predicts performance"), "table", "img",
        ("h3", "Per decile of blueness"), "table",
        ("h3", "Hardest classes (by mean correct; at least 5 samples)"), "table",
        ("h3", "Per tag set"), "table",
        ("h3", "Performance prior from blueness"), "p", "table"]
    header, rows = table_after(bl, "Which quality field predicts performance")
    best = _check_ranking(header, rows, qualities, t, N_BOOT)
    assert best == "blueness" and [r[0] for r in rows] == ["blueness", "level"]
    curve = bl[perf + 4]
    assert curve == ("img", {"alt": "performance versus quality", "src": curve[1]["src"]})
    _check_curve(figures[2], curve[1]["src"], qualities, t, "correct")
    q, hib = qualities["blueness"]
    _check_decile_table(*table_after(bl, "Per decile of blueness"), q, t)
    gt = ds.values("ground_truth.label")
    shown = _check_group_table(*table_after(bl, "Hardest classes (by mean correct; at least 5 samples)"),
                               q, t, gt, hib, 200, min_n=5, by_target=True, limit=15)
    assert len(shown) == 15 and "z_four" not in shown and "<b>c05</b>" in shown
    tags = [",".join(sorted(tg)) if tg else None for tg in ds.values("tags")]
    shown = _check_group_table(*table_after(bl, "Per tag set"), q, t, tags, hib, 200)
    assert shown == ["<b>fog</b>", "<b>fog</b>,night", "it's \"q\"", "night"]
    assert "(<code>dq.PerformancePrior</code>).</p>" in page
    _check_prior(bl, "blueness", q, t, hib, N_BOOT)


def test_the_report_of_a_view_with_its_options(world, figures):
    """A view without the unreadable sample, one field, three worst samples, another
    evaluation (40 labelled samples: the prior is shown)."""
    ds = world["ds"]
    view = ds.exclude([world["bad_id"]])
    page = render_report(view, fields=["level"], worst=3, eval_key="eval40")
    bl = blocks(page)
    assert page.startswith(HEAD.format(name=html.escape(ds.name), n=N, when=_stamp(page)))
    src, ok, nxt = _field_checks(bl, ds, view, "level", 3, dict(zip(view.values("id"), view.values("filepath"))))
    # the failure is outside the view: it is named by its sample id
    assert bl[nxt - 1] == ("table", ["filepath", "reason"],
                           [[world["bad_id"], dq.load_quality_run(ds, "level").failures[world["bad_id"]]]])
    i = bl.index(("h3", "3 lowest-quality images"))
    assert [b[1]["alt"] for b in bl[i + 1:i + 7:2]] == [world["paths"][k] for k in np.argsort(LEVEL)[:3]]
    t = _floats(view.values("eval40"))
    assert np.isfinite(t).sum() == 40
    qualities = _qualities(view, ["level"])
    q, hib = qualities["level"]
    assert outline(bl[nxt:]) == [
        ("h2", "Quality versus performance: evaluation eval40 (correct)"), "p",
        ("h3", "Which quality field predicts performance"), "table", "img",
        ("h3", "Per decile of level"), "table",
        ("h3", "Hardest classes (by mean correct; at least 5 samples)"), "p",
        ("h3", "Per tag set"), "table",
        ("h3", "Performance prior from level"), "p", "table"]
    assert bl[nxt + 1] == ("p", "classification evaluation of predictions against ground_truth; mean correct "
                                f"{short(np.nanmean(t))} over 40 samples. Spearman is primary; intervals are "
                                "bootstrap 95%.")
    assert after(bl, "Hardest classes (by mean correct; at least 5 samples)") == [("p", "none")]
    _check_ranking(*table_after(bl, "Which quality field predicts performance"), qualities, t, N_BOOT)
    _check_decile_table(*table_after(bl, "Per decile of level"), q, t)
    tags = [",".join(sorted(tg)) if tg else None for tg in view.values("tags")]
    _check_group_table(*table_after(bl, "Per tag set"), q, t, tags, hib, 200)
    _check_prior(bl, "level", q, t, hib, N_BOOT)
    assert len(figures) == 2
    _check_histogram(figures[0], src, ok, "level (mean<level>)")
    _check_curve(figures[1], bl[nxt + 4][1]["src"], qualities, t, "correct")


def test_the_performance_section_on_its_own(world, figures):
    """Called directly: fields without runs are ignored, the resample count and the
    number of classes are the caller's, and the prior needs 40 labelled samples."""
    ds = world["ds"]
    parts = performance_section(ds, ["nope", "blueness"], eval_key="eval", n_boot=50, max_groups=3)
    bl = blocks("\n".join(parts))
    assert outline(bl) == [
        ("h2", "Quality versus performance: evaluation eval (correct)"), "p",
        ("h3", "Which quality field predicts performance"), "table", "img",
        ("h3", "Per decile of blueness"), "table",
        ("h3", "Hardest classes (by mean correct; at least 5 samples)"), "table",
        ("h3", "Per tag set"), "table",
        ("h3", "Performance prior from blueness"), "p", "table"]
    t = _floats(ds.values("eval"))
    qualities = _qualities(ds, ["blueness"])
    q, hib = qualities["blueness"]
    _check_ranking(*table_after(bl, "Which quality field predicts performance"), qualities, t, 50)
    _check_group_table(*table_after(bl, "Hardest classes (by mean correct; at least 5 samples)"), q, t,
                       ds.values("ground_truth.label"), hib, 50, min_n=5, by_target=True, limit=3)
    tags = [",".join(sorted(tg)) if tg else None for tg in ds.values("tags")]
    _check_group_table(*table_after(bl, "Per tag set"), q, t, tags, hib, 50)
    _check_prior(bl, "blueness", q, t, hib, 50)
    _check_curve(figures[0], bl[4][1]["src"], qualities, t, "correct")

    # 39 labelled samples: no prior
    bl = blocks("\n".join(performance_section(ds, ["blueness"], eval_key="eval39", n_boot=20)))
    assert outline(bl) == [
        ("h2", "Quality versus performance: evaluation eval39 (correct)"), "p",
        ("h3", "Which quality field predicts performance"), "table", "img",
        ("h3", "Per decile of blueness"), "table",
        ("h3", "Hardest classes (by mean correct; at least 5 samples)"), "p",
        ("h3", "Per tag set"), "table"]
    assert performance_section(ds, ["nope"]) == []
    # an empty view (this used to fail indexing with an empty, float, sample order): no
    # mean of nothing, and so no "Mean of empty slice" warning either
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        bl = blocks("\n".join(performance_section(ds.limit(0), ["blueness"], eval_key="eval", n_boot=20)))
    assert outline(bl) == [
        ("h2", "Quality versus performance: evaluation eval (correct)"), "p",
        ("h3", "Which quality field predicts performance"), "table", "p"]
    assert bl[-1] == ("p", "No quality scores in this view: nothing to bin or break down.")
    assert bl[1] == ("p", "classification evaluation of predictions against ground_truth; mean correct n/a over "
                          "0 samples. Spearman is primary; intervals are bootstrap 95%.")
    # no sample tagged: no tag table
    bl = blocks("\n".join(performance_section(ds.skip(14), ["blueness"], eval_key="eval", n_boot=20)))
    assert [b[1] for b in bl if b[0] == "h3"] == [
        "Which quality field predicts performance", "Per decile of blueness",
        "Hardest classes (by mean correct; at least 5 samples)", "Performance prior from blueness"]
    assert performance_section(world["plain"], ["nope"]) == [
        "<h2>Quality versus performance</h2>", f"<p>{html.escape(NO_EVALUATION)}</p>"]
    parts = performance_section(ds, ["blueness"], eval_key="nope")
    assert parts[0] == "<h2>Quality versus performance</h2>"
    assert parts[1].startswith("<p>no evaluation &#x27;nope&#x27; on this dataset; available: ")


def test_classes_only_for_classification_and_only_labelled(plain):
    """No per-class table for a detection evaluation (its labels are per object), and
    samples without ground truth form no class."""
    det = _shared("detected", _build_detected)
    bl = blocks("\n".join(performance_section(det, ["level"], n_boot=20)))
    assert [b[1] for b in bl if b[0] in ("h2", "h3")] == [
        "Quality versus performance: evaluation det (f1)", "Which quality field predicts performance",
        "Per decile of level"]
    unlabelled = _shared("unlabelled", _build_unlabelled)
    bl = blocks("\n".join(performance_section(unlabelled, ["level"], n_boot=20)))
    assert after(bl, "Hardest classes (by mean correct; at least 5 samples)") == [("p", "none")]


def test_classes_of_a_higher_is_better_field(world):
    """The within-class correlation is oriented by the best field's own direction."""
    ds = world["ds"]
    bl = blocks("\n".join(performance_section(ds, ["level"], eval_key="eval", n_boot=20, max_groups=4)))
    q, hib = _qualities(ds, ["level"])["level"]
    _check_group_table(*table_after(bl, "Hardest classes (by mean correct; at least 5 samples)"), q,
                       _floats(ds.values("eval")), ds.values("ground_truth.label"), hib, 20, min_n=5,
                       by_target=True, limit=4)


def test_the_answers_come_first(world, many):
    """Issue 17, item 10: the report opens with the answers (best predictor, accuracy to
    expect, hardest class), each equal to the detailed tables further down, which the
    tests above check against scipy, sklearn and hand counts."""
    ds = world["ds"]
    page = render_report(ds)
    bl = blocks(page)
    first_h2 = next(i for i, b in enumerate(bl) if b[0] == "h2")
    assert bl[first_h2] == ("h2", "Answers")
    items = [b[1] for b in bl[first_h2 + 1:first_h2 + 4]]
    assert all(b[0] == "li" for b in bl[first_h2 + 1:first_h2 + 4])
    header, rows = table_after(bl, "Which quality field predicts performance")
    best = dict(zip(header, rows[0]))
    assert items[0] == (f"Best predictor of correct (evaluation eval): {best['field']}, Spearman "
                        f"{best['spearman']}, AUROC for errors {best['auroc']}; of 2 fields.")
    prior = after(bl, f"Performance prior from {best['field']}", 2)[1]
    held = dict(zip(prior[1], prior[2][0]))
    # the whole dataset is in the report: fitted on one half, checked on the other, with the
    # prior table's split (same seed), so the same prediction and measurement; 90% interval
    assert items[1].startswith(f"Accuracy to expect from {best['field']} alone: {held['predicted accuracy']} [")
    assert "(90% interval) for a held-out half of this view (" in items[1]
    assert f"; measured {held['actual']} [" in items[1] and items[1].endswith(" with a label.")
    gt = np.array(ds.values("ground_truth.label"), dtype=object)
    t = _floats(ds.values("eval"))
    accs = {c: (np.nanmean(t[gt == c]), int(np.isfinite(t[gt == c]).sum())) for c in set(gt)
            if c is not None and np.isfinite(t[gt == c]).sum() >= 5}
    worst = min(accs, key=lambda c: (accs[c][0], str(c)))
    assert items[2].startswith(f"Hardest class: {worst}, correct {accs[worst][0]:.3f} [")
    assert f"over {accs[worst][1]} samples; its image quality alone predicts " in items[2]
    # without an evaluation: says so; the thumbnails still follow
    bl = blocks(render_report(many, fields=["level"]))
    i = bl.index(("h2", "Answers"))
    assert bl[i + 1][0] == "p" and bl[i + 1][1].startswith("No model evaluation to relate quality to")


def test_thumbnails_keep_the_report_small_and_survive_unreadable_files(many, tmp_path):
    page = render_report(many, fields=["level"], worst=50)
    thumbs = re.findall(r"data:image/jpeg;base64,([A-Za-z0-9+/=]+)", page)
    assert len(thumbs) == MAX_THUMBS  # at most 12, whatever was asked
    assert all(len(base64.b64decode(b)) < 12_000 for b in thumbs)
    assert thumbnail_base64(str(tmp_path / "missing.jpg")) is None
    (tmp_path / "junk.jpg").write_bytes(b"not an image")
    assert thumbnail_base64(str(tmp_path / "junk.jpg")) is None


def test_the_chosen_evaluation_drives_the_answers_and_the_captions(make_dataset, tmp_path):
    """``eval_key`` reaches the answers and the thumbnails' labels: with two evaluations
    of different label fields, each one's fields and name, not the newest one's."""
    grays = _grays(str(tmp_path))
    n = 10
    ds = make_dataset([grays[k % 5] for k in range(n)],
                      gt=[fo.Classification(label=f"g{k}") for k in range(n)],
                      pred=[fo.Classification(label=f"g{k}" if k % 3 else "x") for k in range(n)],
                      gt2=[fo.Classification(label=f"h{k}") for k in range(n)],
                      pred2=[fo.Classification(label=f"h{k}" if k % 2 else "y") for k in range(n)])
    dq.compute_quality(ds, MeanLevel(), field="level", num_workers=0, device="cpu", progress=False)
    ds.evaluate_classifications("pred", gt_field="gt", eval_key="first")
    ds.evaluate_classifications("pred2", gt_field="gt2", eval_key="second")
    assert report._label_fields(ds, "first") == ["gt", "pred"]
    assert report._label_fields(ds, "second") == ["gt2", "pred2"]
    for key, (gt, pred) in (("first", ("gt", "pred")), ("second", ("gt2", "pred2"))):
        bl = blocks(render_report(ds, eval_key=key))
        i = bl.index(("h2", "Answers"))
        assert bl[i + 1][1].startswith(f"Best predictor of correct (evaluation {key}): level"), key
        caption = next(b[1] for b in bl if b[0] == "figcaption")
        j = ds.values("filepath").index(next(b[1]["alt"] for b in bl if b[0] == "img" and "alt" in b[1]
                                             and b[1]["alt"].endswith(".png")))
        assert f"{gt}: {ds.values(gt + '.label')[j]}{pred}: {ds.values(pred + '.label')[j]}" in caption, key

#!/usr/bin/env python3
"""Writes OUT/report.md, the report of the Fashion-MNIST example (scripts/demo.sh, step 4).

Reads what demo.sh's steps wrote under OUT (a missing file is an error: exit status 1, naming it):
  experts/{ae,classifier,judge}/summary.json     the experts' test scores
  runs/NAME/summary.json                         each cINN's steps
  samples/NAME{,.t07}.accuracy.json, samples/NAME.{fid,nll,div}.json   each cINN's scores
  samples/real.accuracy.json, samples/real.rec.accuracy.json, samples/real.rec.props.json
  samples/TEXT_RUN{,.t07}.props.json, samples/TEXT_RUN.{in_vocabulary,heldout}.accuracy.json
  samples/reference.fid.json                     optional (left out of the report when empty)
  with --extras: experts/shape/summary.json, samples/{classifier,shape}.sketch.accuracy.json,
  samples/{stage32ae,shape32ae}.sketch.accuracy.json, samples/edit_{brightness,size}.{own,edit}.accuracy.json,
  samples/{seghard2ae,segsoft2ae,label2ae,real.rec}.iou.json, runs/dom2ae/summary.json,
  samples/dom_{a2b,b2a}.{own,edit}.accuracy.json
and the held-out prompts' TSV (--heldout-prompts: its lines less the header are the prompts).
demo.sh passes its experiment table (--experiment, one per line of it, in the report's order), the
limits, the held-out grid's prompts, the seconds so far and, without sentence-BERT, why.
Writes OUT/report.md.tmp, then renames it to OUT/report.md. Numbers are printed as jq 1.6 and
bash's printf printed them when demo.sh wrote the report itself. Python standard library only.
"""
import argparse
import datetime
import json
import math
import os
import sys
from fractions import Fraction

# The columns of demo.sh's EXPERIMENTS lines.
COLUMNS = ("name", "config", "condition", "cache", "order", "description", "text_expert", "text_expert_name")


class ReportError(Exception):
    pass


def load(path):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise ReportError(f"missing input {path}") from None
    except (OSError, ValueError) as e:
        raise ReportError(f"cannot read {path}: {e}") from None


def number(doc, key, path):
    v = doc.get(key) if isinstance(doc, dict) else None
    if isinstance(v, bool) or not isinstance(v, (int, float)) or math.isnan(v):
        raise ReportError(f"{path}: .{key} is not a number ({json.dumps(v)})")
    return float(v)


def jq_number(x):
    """A number as jq 1.6 prints it: the shortest digits that read back as the same double,
    integers without a decimal point, an exponent (at least 2 digits) below 1e-4 or past 15
    digits beyond the significant ones."""
    x = float(x)
    if math.isnan(x):
        return "null"
    if math.isinf(x):
        x = math.copysign(sys.float_info.max, x)
    sign = "-" if math.copysign(1.0, x) < 0 else ""
    if x == 0:
        return sign + "0"
    mantissa, _, exp = repr(abs(x)).partition("e")
    whole, _, frac = mantissa.partition(".")
    digits = whole + frac
    lead = len(digits) - len(digits.lstrip("0"))
    decpt = len(whole) + int(exp or 0) - lead
    digits = digits.strip("0")
    if decpt <= -4 or decpt > len(digits) + 15:
        e = decpt - 1
        text = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        return f"{sign}{text}e{'-' if e < 0 else '+'}{abs(e):02d}"
    if decpt <= 0:
        return f"{sign}0.{'0' * -decpt}{digits}"
    if decpt >= len(digits):
        return sign + digits + "0" * (decpt - len(digits))
    return f"{sign}{digits[:decpt]}.{digits[decpt:]}"


def jq_raw(v):
    """A scalar as `jq -r` (or jq's tostring) prints it."""
    if isinstance(v, str):
        return v
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return jq_number(v)
    raise ReportError(f"expected a scalar, got {json.dumps(v)}")


def jq_round(x, scale):
    """jq's `. * scale | round / scale` (C round: halves away from zero), printed as jq does."""
    y = x * scale
    if math.isinf(y):
        return jq_number(y / scale)
    r = math.floor(abs(y))
    if abs(y) - r >= 0.5:
        r += 1
    return jq_number(math.copysign(r, y) / scale)


def printf_f(x, decimals):
    """bash's printf '%.Nf' of jq's text of x: bash reads the text as a long double (64-bit
    significand, to nearest) and prints it rounded to nearest (ties to even)."""
    text = jq_number(x)
    q = Fraction(text)
    negative = text.startswith("-")
    q = abs(q)
    if q:
        e = q.numerator.bit_length() - q.denominator.bit_length() - 64
        while q / Fraction(2) ** e >= 2 ** 64:
            e += 1
        while q / Fraction(2) ** e < 2 ** 63:
            e -= 1
        q = round(q / Fraction(2) ** e) * Fraction(2) ** e
    k = round(q * 10 ** decimals)
    whole, frac = divmod(k, 10 ** decimals)
    return f"{'-' if negative else ''}{whole}" + (f".{frac:0{decimals}d}" if decimals else "")


def table_row(cells):
    """A Markdown table row."""
    return "| " + " | ".join(cells) + " |"


def parse_experiment(line):
    fields = line.split("|")
    if len(fields) != len(COLUMNS):
        raise ReportError(f"--experiment needs {len(COLUMNS)} fields separated by '|' "
                          f"({', '.join(COLUMNS)}), got {line!r}")
    return dict(zip(COLUMNS, fields))


def report(a):
    out, s = a.out, os.path.join(a.out, "samples")
    exps = [parse_experiment(line) for line in a.experiment]
    runs = [e["name"] for e in exps]
    what = {e["name"]: e["description"] for e in exps}
    text_runs = [e for e in exps if e["text_expert"]]
    stage_runs = [r for r in runs if r.startswith("stage")]
    sbert = "sbert2ae" in runs
    if not sbert and a.sbert_skipped is None:
        raise ReportError("without sbert2ae, --sbert-skipped must say why")

    def doc(*parts):
        path = os.path.join(*parts)
        return load(path), path

    def raw(key, *parts):
        d, path = doc(*parts)
        return jq_raw(d.get(key) if isinstance(d, dict) else None)

    def rounded(key, scale, *parts):
        d, path = doc(*parts)
        return jq_round(number(d, key, path), scale)

    def fixed(key, decimals, *parts):
        d, path = doc(*parts)
        return printf_f(number(d, key, path), decimals)

    ae, ae_path = doc(out, "experts", "ae", "summary.json")
    l1 = ae.get("test_l1") if isinstance(ae, dict) else None
    l1 = "reused" if l1 is None or l1 is False else jq_raw(l1)
    steps = ", ".join(f"{r} {raw('steps', out, 'runs', r, 'summary.json')}" for r in runs)
    try:
        with open(a.heldout_prompts, "rb") as f:
            prompts = f.read().count(b"\n") - 1
    except OSError as e:
        raise ReportError(f"cannot read {a.heldout_prompts}: {e}") from None
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")

    L = [
        "# net2net: the Fashion-MNIST example",
        "",
        f"Every number below is computed by this run ({stamp}, {a.seconds} s for the steps",
        f"that were not reused). Experts: autoencoder (test L1 {l1}),",
        f"classifier (test accuracy {raw('test_accuracy', out, 'experts', 'classifier', 'summary.json')}), and a separately trained",
        f"judge (test accuracy {raw('test_accuracy', out, 'experts', 'judge', 'summary.json')}) that labels generated images and",
        "gives the FID features (the example's own feature network, not Inception: these FIDs are not",
        f"comparable to published ones). cINN caches: {a.train_limit} training and {a.test_limit} test items; steps: {steps}.",
        "",
        "## Scores",
        "",
        f"One sample per test condition ({a.eval_rows} conditions). Accuracy: the judge's class of the generated",
        "image equals the class of the condition's item, at temperature 1 and 0.7 (the judge on the real",
        f"images themselves: {rounded('accuracy', 1000, s, 'real.accuracy.json')}; on their AE reconstructions:",
        f"{rounded('accuracy', 1000, s, 'real.rec.accuracy.json')}, the ceiling of any translation into the AE). FID: samples at temperature 1",
        "against real test images. Diversity: mean pairwise distance of 8 samples per condition (100",
        "conditions), in the AE latent and in pixels. NLL: test loss (0.5|v|^2 - log|det J|).",
        "",
        "| translation | condition | accuracy (T=1) | accuracy (T=0.7) | FID (judge features) | diversity (latent) | diversity (pixels) | test NLL | bits/dim |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in runs:
        cells = [r, what[r],
                 fixed("accuracy", 3, s, f"{r}.accuracy.json"), fixed("accuracy", 3, s, f"{r}.t07.accuracy.json"),
                 fixed("fid", 2, s, f"{r}.fid.json"),
                 fixed("diversity_z", 2, s, f"{r}.div.json"), fixed("diversity_pixels", 2, s, f"{r}.div.json"),
                 fixed("nll", 3, s, f"{r}.nll.json"), fixed("bits_per_dim", 3, s, f"{r}.nll.json")]
        L.append(table_row(cells))
    L += [
        "",
        "Text, class and requested properties together (an image counts if the judge gives the requested",
        "class and every property word of its caption holds on the generated image):",
        f"{rounded('accuracy_with_properties', 1000, s, 'text2ae.props.json')} at temperature 1,",
        f"{rounded('accuracy_with_properties', 1000, s, 'text2ae.t07.props.json')} at temperature 0.7 (properties alone:",
        f"{rounded('property_agreement', 1000, s, 'text2ae.t07.props.json')} of {raw('properties_requested', s, 'text2ae.t07.props.json')} requested; a random image of the right class meets a",
        "requested tertile with probability about 1/3). The AE's reconstructions of the real images score",
        f"{rounded('accuracy_with_properties', 1000, s, 'real.rec.props.json')} (properties alone: {rounded('property_agreement', 1000, s, 'real.rec.props.json')}): the ceiling of this score for any translation into the AE.",
    ]
    if sbert:
        L += [
            f"The same captions through sentence-BERT: {rounded('accuracy_with_properties', 1000, s, 'sbert2ae.props.json')} at temperature 1,",
            f"{rounded('accuracy_with_properties', 1000, s, 'sbert2ae.t07.props.json')} at temperature 0.7 (properties alone: {rounded('property_agreement', 1000, s, 'sbert2ae.t07.props.json')}).",
        ]
    if os.path.isfile(os.path.join(s, "reference.fid.json")) and os.path.getsize(os.path.join(s, "reference.fid.json")) > 0:
        L += ["", f"For scale: FID of the first {a.eval_rows} real test images against all {a.test_limit}: "
                  f"{rounded('fid', 100, s, 'reference.fid.json')}."]
    L += [
        "",
        "## (a) label -> autoencoder",
        "",
        "A row per class, ten samples each (temperature 1).",
        "",
        "![label to image](label2ae.png)",
        "",
        "## (b) text -> autoencoder",
        "",
        "Captions (class plus dark/light and small/large, relative to the class) through text-hash:256.",
        "",
        "![text to image](text2ae.png)",
        "",
        "## (b') text -> autoencoder through a pretrained language model",
        "",
    ]
    if sbert:
        L += [
            "The same captions through sentence-BERT (all-MiniLM-L6-v2, 384-d, trained by others on a billion",
            "sentence pairs; exported with its tokenizer by scripts/experts/export_sbert.py), the same prompts:",
            "",
            "![sentence-BERT text to image](sbert2ae.png)",
            "",
        ]
    else:
        L += [f"Skipped: {a.sbert_skipped}.", ""]
    L += [
        "### Wording never seen in training",
        "",
        f"{prompts} prompts whose words occur in no training caption (\"black jacket\", \"trainers\", \"tiny purse\",",
        "\"summer frock\": configs/example/prompts_heldout.tsv), each with the class and the properties it means,",
        "beside the same requests in the captions' own words (\"a dark coat\": prompts_in_vocabulary.tsv).",
        f"{a.prompt_samples} samples per prompt at temperature 1; the judge's class, and class with every requested property",
        "(chance for the class: 0.1).",
        "",
        "| text expert | in-vocabulary: class | in-vocabulary: class + properties | held-out: class | held-out: class + properties |",
        "|---|---:|---:|---:|---:|",
    ]
    for e in text_runs:
        r = e["name"]
        cells = [e["text_expert_name"],
                 fixed("accuracy", 3, s, f"{r}.in_vocabulary.accuracy.json"),
                 fixed("accuracy_with_properties", 3, s, f"{r}.in_vocabulary.accuracy.json"),
                 fixed("accuracy", 3, s, f"{r}.heldout.accuracy.json"),
                 fixed("accuracy_with_properties", 3, s, f"{r}.heldout.accuracy.json")]
        L.append(table_row(cells))
    L.append("")
    for e in text_runs:
        L += [f"Held-out prompts through {e['text_expert_name']} (rows: {', '.join(a.heldout_grid)}):",
              "", f"![held-out prompts, {e['name']}]({e['name']}.heldout.png)", ""]
    L += [
        "## (c) what the classifier's stages keep",
        "",
        "The same 8 test items as conditions, through stage 1, 2, 3 and the logits of the classifier, 8 samples each.",
        "Early stages keep more of the input (samples vary less); later stages are more invariant",
        "(samples vary more): the diversity column above.",
        "",
    ]
    for k, r in enumerate(stage_runs, 1):
        L += [f"Stage {k}:", "", f"![stage {k}]({r}.png)", ""]
    L += [
        "## Transfer (exemplar-guided synthesis)",
        "",
        "First row: test exemplars (their autoencoder reconstructions). Then, for each class c, the",
        "exemplar's residual v = T(z(x) | label(x)) rendered under label c: z' = T^-1(v | c).",
        "",
        "![transfer](transfer.png)",
    ]
    # The grids net2net-train wrote while each cINN trained (train.image_every): what a person
    # looks at first while a job runs.
    during = [r for r in runs if os.path.isdir(os.path.join(out, "runs", r, "images"))]
    if during:
        L += [
            "",
            "## During training",
            "",
            "net2net-train writes image grids into each run folder at steps 1, 2, 4, ... then every",
            "`train.image_every` steps (targets, samples at T=1 of fixed residuals, a transfer row)",
            "and the loss curves (`images/loss.png`, rewritten at each validation):",
            "",
        ]
        for r in during:
            L.append(f"- {r}: `runs/{r}/images/` ({len(os.listdir(os.path.join(out, 'runs', r, 'images')))} files)")
        L += ["", f"Loss curves of {during[0]}:", "", f"![loss](runs/{during[0]}/images/loss.png)"]
    if a.extras:
        L += extras(a, out, s, fixed, raw)
    return "".join(line + "\n" for line in L)


def extras(a, out, s, fixed, raw):
    """The sections of the paper's other experiments (demo.sh EXTRAS=1)."""

    def by_column(part, col):
        path = os.path.join(s, part)
        d = load(path)
        v = d.get("property_agreement_by_column") if isinstance(d, dict) else None
        if not isinstance(v, list) or len(v) != 2:
            raise ReportError(f"{path}: .property_agreement_by_column is not a list of 2")
        return "n/a" if v[col] is None else printf_f(number({"x": v[col]}, "x", path), 3)

    L = [
        "",
        "## Sketch -> image: a shape-biased expert",
        "",
        "The paper translates sketches into images through a ResNet-50 trained on Stylized-ImageNet,",
        "which represents shape, where an ImageNet-trained one does not. Here: the example's classifier",
        "and a second one trained on texture-randomised images (each image kept, inverted, remapped in",
        "intensity, rendered as its sketch, or noised: configs/example/shape_classifier.json), each",
        "with a cINN from its stage 3 (the 128-d features) to the AE trained on real images' pairs (stage32ae, shape32ae).",
        "The sketch rendering is one of the shape-biased classifier's training renderings (the plain one",
        "never saw a sketch), as line drawings are among Stylized-ImageNet's styles; the cINNs saw none.",
        f"Conditions: the sketches (Sobel edge maps, expert `sketch`) of the {a.eval_rows} real test images; the",
        "judge's class of the generated image against the item the sketch came from (chance 0.1).",
        "",
        "| expert f | its test accuracy | its accuracy on the sketches | images from sketches: judge's accuracy | images from real items (T=1) |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, run, label in (("classifier", "stage32ae", "plain classifier"), ("shape", "shape32ae", "shape-biased classifier")):
        L.append(table_row([
            label, raw("test_accuracy", out, "experts", name, "summary.json"),
            fixed("accuracy", 3, s, f"{name}.sketch.accuracy.json"),
            fixed("accuracy", 3, s, f"{run}.sketch.accuracy.json"),
            fixed("accuracy", 3, s, f"{run}.accuracy.json")]))
    L += [
        "",
        "Each row: the sketch, then six samples. Plain classifier:",
        "",
        "![sketches through the plain classifier](stage32ae.sketch.png)",
        "",
        "Shape-biased classifier:",
        "",
        "![sketches through the shape-biased classifier](shape32ae.sketch.png)",
        "",
        "## Attribute editing",
        "",
        "A cINN from the label and the caption properties (expert `label-props`: one-hot class, brightness,",
        "size) to the AE (lp2ae). Each of the first "
        f"{a.edit_rows} test items: v = T(z(x) | c(x)), then z' = T^-1(v | c') where c' is c(x) with one",
        "property set (`net2net-translate --edit 10=-1`: dark), half the rows to each value. The",
        "properties of the result are measured on the image by the captions' own rule. Before: the same",
        "rows under their own condition (the item's reconstruction through the cINN). Class kept: the",
        "judge's class equals the item's. Other property kept: where the item has a tertile of it.",
        "",
        "| edited property | requested value holds: before | after | class kept | other property kept |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, col in (("brightness", 0), ("size", 1)):
        L.append(table_row([
            f"{name} (-1 / +1)",
            by_column(f"edit_{name}.own.accuracy.json", col), by_column(f"edit_{name}.edit.accuracy.json", col),
            fixed("accuracy", 3, s, f"edit_{name}.edit.accuracy.json"),
            by_column(f"edit_{name}.edit.accuracy.json", 1 - col)]))
    L += [
        "",
        "First row: the items (reconstructions); then made dark, light, small, large:",
        "",
        "![attribute editing](edit.png)",
        "",
        "## Segmentation -> image: layout, and how much the condition keeps",
        "",
        "A segmentation-like expert: the item's silhouette on a 7x7 grid (expert `silhouette`), as the",
        "hard mask (argmax: 0/1 per cell) and as the soft scores (each cell's mean foreground score, which",
        "also tells how much of the cell the item fills and how bright it is), each with a cINN to the AE",
        "(seghard2ae, segsoft2ae). The paper: logits keep more of the input than the argmax, so samples from",
        "the argmax vary more. Mask agreement: the generated image's own hard silhouette against the given",
        f"mask, IoU over the cells, one sample for each of the {a.eval_rows} test items; the same for label2ae's",
        "samples of those items (the class alone, no layout) and for the AE's reconstructions (the ceiling).",
        "Diversity: 8 samples for each of 100 masks (as the table above). Judge: the class of the item.",
        "",
        "| condition | mask IoU | cells agreeing | diversity (latent) | diversity (pixels) | judge's accuracy |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for run, label in (("seghard2ae", "hard mask (argmax)"), ("segsoft2ae", "soft scores")):
        L.append(table_row([
            label, fixed("iou", 3, s, f"{run}.iou.json"), fixed("pixel_agreement", 3, s, f"{run}.iou.json"),
            fixed("diversity_z", 2, s, f"{run}.div.json"), fixed("diversity_pixels", 2, s, f"{run}.div.json"),
            fixed("accuracy", 3, s, f"{run}.accuracy.json")]))
    for run, label in (("label2ae", "the class alone (label2ae)"), ("real.rec", "AE reconstructions (ceiling)")):
        L.append(table_row([
            label, fixed("iou", 3, s, f"{run}.iou.json"), fixed("pixel_agreement", 3, s, f"{run}.iou.json"),
            "", "", ""]))
    L += [
        "",
        "Each row: the mask, then six samples (hard mask):",
        "",
        "![masks to images](seghard2ae.png)",
        "",
        "The soft scores (each row starts with the item whose scores condition it):",
        "",
        "![soft scores to images](segsoft2ae.png)",
        "",
        "Exemplar-guided: first row, 8 test exemplars; then the layout of another item (the mask at the",
        "start of the row) rendered with each exemplar's residual v = T(z(y) | mask(y)): z' = T^-1(v | mask(x)).",
        "",
        "![layout of x, residual of y](seghard2ae.transfer.png)",
        "",
        "## Unaligned translation between domains",
        "",
        "Two domains that share no item: the real test and training items of even index, and the",
        "inverted items of odd index. One autoencoder over both (configs/example/autoencoder_domains.json,",
        "trained on the same split), and a cINN from the (class, domain) labels (expert `label-domain`:",
        "one-hot class, then -1 real / +1 inverted) to its latent, trained on both domains' pairs, merged",
        f"by net2net-extract --merge (dom2ae, {raw('steps', out, 'runs', 'dom2ae', 'summary.json')} steps). Translation: v = T(z(x) | class, a),",
        f"x' = D(T^-1(v | class, b)) for {raw('n', s, 'dom_a2b.edit.accuracy.json')} real and {raw('n', s, 'dom_b2a.edit.accuracy.json')} inverted test items. Class kept: the judge's class",
        "of x' (seen in the real domain: an inverted x' is inverted back) equals the item's. In domain b:",
        "the domain classifier (expert `background`, the sign of the border's mean, exact on both",
        "domains' real items) puts x' in b. Own domain: the same rows with b = a.",
        "",
        "| direction | class kept | in the target domain | both | own domain: class kept | own domain: in it |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for way, label in (("a2b", "real -> inverted"), ("b2a", "inverted -> real")):
        L.append(table_row([
            label, fixed("accuracy", 3, s, f"dom_{way}.edit.accuracy.json"),
            fixed("property_agreement", 3, s, f"dom_{way}.edit.accuracy.json"),
            fixed("accuracy_with_properties", 3, s, f"dom_{way}.edit.accuracy.json"),
            fixed("accuracy", 3, s, f"dom_{way}.own.accuracy.json"),
            fixed("property_agreement", 3, s, f"dom_{way}.own.accuracy.json")]))
    L += [
        "",
        "First row: real items (the AE's reconstructions); then under their own domain; then inverted:",
        "",
        "![real to inverted](dom_a2b.png)",
        "",
        "First row: inverted items; then under their own domain; then real:",
        "",
        "![inverted to real](dom_b2a.png)",
    ]
    return L


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True, help="demo.sh's OUT (report.md is written there)")
    p.add_argument("--experiment", action="append", required=True,
                   help="a line of demo.sh's EXPERIMENTS: " + "|".join(COLUMNS) + " (repeat, in the report's order)")
    p.add_argument("--seconds", required=True, help="seconds the demo has run")
    p.add_argument("--train-limit", required=True)
    p.add_argument("--test-limit", required=True)
    p.add_argument("--eval-rows", required=True)
    p.add_argument("--prompt-samples", required=True)
    p.add_argument("--heldout-prompts", required=True, help="configs/example/prompts_heldout.tsv")
    p.add_argument("--heldout-grid", action="append", default=[], help="a prompt of the held-out grid (repeat)")
    p.add_argument("--extras", action="store_true", help="the sections of the paper's four other experiments: sketch, editing, segmentation, unaligned (demo.sh EXTRAS=1)")
    p.add_argument("--edit-rows", default="500", help="test items edited (demo.sh EDIT_ROWS)")
    p.add_argument("--sbert-skipped", help="why there is no sentence-BERT run (required without sbert2ae)")
    a = p.parse_args()
    try:
        text = report(a)
    except ReportError as e:
        print(f"report.py: {e}", file=sys.stderr)
        return 1
    path = os.path.join(a.out, "report.md")
    with open(path + ".tmp", "w", encoding="utf-8", newline="\n") as f:
        f.write(text)
    os.replace(path + ".tmp", path)
    return 0


if __name__ == "__main__":
    sys.exit(main())

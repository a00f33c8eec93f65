// net2net-translate: conditions -> samples of the target representation (and images); the
// engine is lib/net2net/translate.
#include <iostream>

#include "net2net/commands/commands.h"
#include "net2net/core/error.h"
#include "net2net/data/source.h"
#include "net2net/translate/translate.h"

namespace net2net::commands {
namespace {

class TranslateTool : public cli::Tool {
 public:
  std::string name() const override { return "net2net-translate"; }
  std::string description() const override {
    return "Translate conditions into the target expert's space with a trained cINN:\n"
           "z_theta = T^-1(v | z_phi), v ~ N(0, T^2 I), K samples per condition; with a decoder,\n"
           "decoded images (/image) and a PNG grid (a row per condition, a column per sample).\n"
           "Transfer mode: v = T(z_theta(x) | z_phi(x)) of exemplars x, re-rendered under each\n"
           "target condition (exemplar-guided synthesis, attribute editing). An unconditional model\n"
           "(model.cond_dim 0) takes no condition: --samples K alone.\n\n"
           "Examples:\n"
           "  net2net-translate --checkpoint runs/l2ae --labels 0,3,7 --samples 8 --out s.h5 --png s.png\n"
           "  net2net-translate --checkpoint runs/t2ae --text \"a dark large coat\" --samples 8 --out t.h5 --png t.png\n"
           "  net2net-translate --checkpoint runs/s2 --data fashion-mnist:test --cond-expert ts:clf.pt:stage2 \\\n"
           "      --samples 4 --out st.h5\n"
           "  net2net-translate --checkpoint runs/l2ae --mode transfer --exemplar cache/test.h5 \\\n"
           "      --labels 0,1,2,3,4,5,6,7,8,9 --out shift.h5 --png shift.png\n"
           "  net2net-translate --checkpoint runs/l2ae --mode transfer --exemplar cache/test.h5 --exemplars 4 \\\n"
           "      --labels 7 --alpha 0,0.25,0.5,0.75,1 --out edit.h5 --png edit.png     # edit strength\n"
           "  net2net-translate --checkpoint runs/lp2ae --mode transfer --exemplar cache/test.h5 --exemplars 8 \\\n"
           "      --edit 10=-1 --edit 10=1 --out dark_light.h5 --png dark_light.png   # attribute editing";
  }
  void add_options(CLI::App& app) override {
    app.add_option("--checkpoint", r_.checkpoint, "Run directory or checkpoint file")->required();
    app.add_option("--cond", r_.cond, "Conditions from a cache: h5:FILE:DATASET");
    app.add_option("--data", r_.data, "Raw inputs for --cond-expert; SOURCE: " + data::source_usages());
    app.add_option("--cond-expert", r_.cond_expert, "EXPERT that turns --data into conditions (default: the model's)");
    app.add_option("--labels", r_.labels, "Comma-separated class labels as conditions")->delimiter(',');
    app.add_option("--text", r_.texts, "A text as a condition; repeatable");
    app.add_option("--limit", r_.limit, "With --cond or --data: only the first N conditions")->check(cli::positive_number());
    app.add_option("--samples", r_.samples, "Samples per condition")->check(cli::positive_number())->capture_default_str();
    app.add_option("--temperature", r_.temperature, "Scale of v ~ N(0, T^2 I) (0: the mode)")->check(cli::non_negative_number())->capture_default_str();
    app.add_option("--out", r_.out, "Output HDF5 (/z, /cond_index, /label, /image)")->required();
    app.add_option("--decoder", r_.decoder, "EXPERT that decodes z into images (default with --png: the model's target expert)");
    app.add_option("--png", r_.png, "PNG grid (a row per condition, a column per sample)");
    app.add_option("--mode", r_.mode, "sample or transfer")->check(CLI::IsMember({"sample", "transfer"}))->capture_default_str();
    app.add_option("--exemplar", r_.exemplar, "Transfer: a cache (FILE.h5) holding the model's condition and target datasets");
    app.add_option("--alpha", r_.alphas,
                   "Transfer: edit strengths A[,A...]; the condition moves from the exemplar's own (0) to the target (1), "
                   "linearly; the PNG gets a strip per exemplar (/alpha in --out)")
        ->delimiter(',')
        ->type_name("A[,A...]");
    app.add_option("--edit", r_.edits,
                   "Transfer: a target made from each exemplar's own condition with columns set, COL=VALUE[,COL=VALUE...]; "
                   "repeatable, each a row of the grid (attribute editing: label-props column 10 brightness, 11 size, -1/+1)")
        ->type_name("COL=VALUE[,...]");
    app.add_option("--exemplars", r_.exemplar_limit, "Transfer: how many exemplars (the first N rows)")->check(cli::positive_number())->capture_default_str();
    app.add_flag("--png-inputs", r_.png_inputs, "With --data of images: each grid row starts with the condition's input item (a sketch, a mask)");
    app.add_option("--grid-rows", r_.max_rows_in_png, "Most conditions drawn in the PNG")->check(cli::positive_number())->capture_default_str();
    app.add_option("--grid-cols", r_.max_cols_in_png, "Most samples of a condition drawn in the PNG (the first ones)")
        ->check(cli::positive_number())->capture_default_str();
    app.add_option("--batch-size", r_.batch_size, "Rows per batch (large jobs stream in batches)")->check(cli::positive_number())->capture_default_str();
    app.add_flag("--force", r_.force, "Overwrite --out");
  }
  int run(const cli::GlobalOptions& g) override {
    r_.seed = g.seed;
    r_.device = g.device;
    auto summary = translate::run_translate(r_);
    if (g.json) std::cout << summary.dump() << std::endl;
    return 0;
  }

 private:
  translate::TranslateRequest r_;
};

}  // namespace

std::unique_ptr<cli::Tool> make_translate_tool() { return std::make_unique<TranslateTool>(); }

}  // namespace net2net::commands

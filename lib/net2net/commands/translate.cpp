// net2net-translate: conditions -> samples of the target representation (and images).
// This stage declares the contract's options; translation lands with issue 6.
#include "net2net/commands/commands.h"
#include "net2net/core/error.h"

namespace net2net::commands {
namespace {

class TranslateTool : public cli::Tool {
 public:
  std::string name() const override { return "net2net-translate"; }
  std::string description() const override {
    return "Translate conditions into the target expert's space with a trained cINN:\n"
           "z_theta = T^-1(v | z_phi), v ~ N(0, T^2 I); optionally decode to a PNG grid.\n\n"
           "Example:\n"
           "  net2net-translate --checkpoint runs/l2ae --labels 0,3,7 --samples 8 --out samples.h5";
  }
  void add_options(CLI::App& app) override {
    app.add_option("--checkpoint", checkpoint_, "Run directory or checkpoint file");
    app.add_option("--cond", cond_, "Conditions from a cache: h5:FILE:DATASET");
    app.add_option("--data", data_, "Raw inputs (a SOURCE) for --cond-expert");
    app.add_option("--cond-expert", cond_expert_, "EXPERT that turns --data into conditions");
    app.add_option("--labels", labels_, "Comma-separated class labels as conditions")->delimiter(',');
    app.add_option("--text", text_, "Texts as conditions; repeatable");
    app.add_option("--samples", samples_, "Samples per condition")->check(CLI::PositiveNumber);
    app.add_option("--temperature", temperature_, "Scale of v ~ N(0, T^2 I)")->check(CLI::NonNegativeNumber);
    app.add_option("--out", out_, "Output HDF5 (/z, /cond_index)");
    app.add_option("--decoder", decoder_, "EXPERT that decodes z into images");
    app.add_option("--png", png_, "PNG grid (a row per condition, a column per sample)");
    app.add_option("--mode", mode_, "sample or transfer")->check(CLI::IsMember({"sample", "transfer"}));
    app.add_option("--exemplar", exemplar_, "Exemplars whose residual v is transferred (--mode transfer)");
  }
  int run(const cli::GlobalOptions&) override {
    throw NotImplemented("net2net-translate is not built yet (issue 6)");
  }

 private:
  std::string checkpoint_, cond_, data_, cond_expert_, out_, decoder_, png_, mode_ = "sample", exemplar_;
  std::vector<int64_t> labels_;
  std::vector<std::string> text_;
  int64_t samples_ = 1;
  double temperature_ = 1.0;
};

}  // namespace

std::unique_ptr<cli::Tool> make_translate_tool() { return std::make_unique<TranslateTool>(); }

}  // namespace net2net::commands

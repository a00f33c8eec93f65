#include "net2net/metrics/energy_report.h"

#include <sys/utsname.h>

#include <cmath>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <sstream>

#include "net2net/config/schema.h"
#include "net2net/core/atomic_file.h"
#include "net2net/core/error.h"
#include "net2net/core/runtime.h"
#include "net2net/version.h"

namespace net2net::metrics {
namespace fs = std::filesystem;
using nlohmann::json;

json load_power_profiles(const std::vector<std::string>& extra) {
  json profiles = config::load_json_file(data_dir() + "/power_profiles.json");
  for (const auto& f : extra) {
    json more = config::load_json_file(f);
    if (!more.is_object()) throw InputError("power profiles '" + f + "' must be a JSON object {name: {watts, description}}");
    for (const auto& [name, p] : more.items()) {
      if (!p.is_object() || !p.contains("watts") || !p["watts"].is_number() || p["watts"].get<double>() <= 0)
        throw InputError("power profiles '" + f + "': profile '" + name + "' needs a positive number 'watts'");
      profiles[name] = p;
    }
  }
  return profiles;
}

CostRow nominal_cost(const std::string& model, const std::string& hardware, double hours, double watts,
                     const EnergyOptions& o) {
  CostRow r;
  r.model = model, r.hardware = hardware, r.hours = hours, r.power_watts = watts;
  r.kwh = watts * hours / 1000.0 * o.pue;
  r.cost = r.kwh * o.price_per_kwh;
  r.co2_kg = r.kwh * o.co2_per_kwh;
  r.energy_source = "nominal";
  return r;
}

namespace {
json profile(const json& profiles, const std::string& name) {
  if (profiles.contains(name)) return profiles[name];
  std::string all;
  for (const auto& [k, v] : profiles.items()) all += (all.empty() ? "" : ", ") + k;
  throw UsageError("unknown power profile '" + name + "' (known: " + all + "; add your own with --profiles FILE)");
}
}  // namespace

std::vector<CostRow> energy_report(const EnergyOptions& o) {
  if (o.pue < 1.0) throw UsageError("--pue must be >= 1");
  json profiles = load_power_profiles(o.profile_files);
  std::optional<std::pair<double, std::string>> nominal;
  if (o.watts) nominal = {{*o.watts, std::to_string(static_cast<int>(std::lround(*o.watts))) + " W (given)"}};
  else if (o.profile) {
    json p = profile(profiles, *o.profile);
    nominal = {{p["watts"].get<double>(), p.value("description", *o.profile)}};
  }
  std::vector<CostRow> rows;
  for (const auto& run : o.runs) {
    fs::path dir(run);
    if (!fs::exists(dir / "energy.json"))
      throw IoError("run '" + run + "' has no energy.json (is it a net2net-train run directory?)");
    json e = config::load_json_file((dir / "energy.json").string());
    std::string name = dir.filename().string();
    if (fs::exists(dir / "config.json")) {
      json c = config::load_json_file((dir / "config.json").string());
      if (c.contains("name") && c["name"].is_string() && !c["name"].get<std::string>().empty()) name = c["name"];
    }
    const double hours = e.value("wall_seconds", 0.0) / 3600.0;
    const json hw = e.value("hardware", json::object());
    CostRow r;
    if (nominal) {
      r = nominal_cost(name, nominal->second, hours, nominal->first, o);
      bool measured = e["cpu_energy"].value("measured", false) || e["gpu_energy"].value("measured", false);
      r.note = measured ? "nominal by request (measured energy is in energy.json)"
                        : "nominal: " + e["cpu_energy"].value("note", std::string("no measured energy"));
    } else {
      bool cpu = e["cpu_energy"].value("measured", false), gpu = e["gpu_energy"].value("measured", false);
      if (!cpu && !gpu)
        throw UsageError("run '" + run + "' has no measured energy (" + e["cpu_energy"].value("note", std::string("")) +
                         "); give --power-profile NAME or --power-watts W for a nominal estimate");
      r.model = name, r.hours = hours;
      r.cpu_kwh = e.value("cpu_joules", 0.0) / 3.6e6 * o.pue;
      r.gpu_kwh = e.value("gpu_joules", 0.0) / 3.6e6 * o.pue;
      r.kwh = r.cpu_kwh + r.gpu_kwh;
      r.cost = r.kwh * o.price_per_kwh;
      r.co2_kg = r.kwh * o.co2_per_kwh;
      r.power_watts = hours > 0 ? r.kwh * 1000.0 / hours / o.pue : 0.0;
      r.energy_source = std::string("measured (") + (cpu ? "RAPL" : "") + (cpu && gpu ? " + " : "") + (gpu ? "NVML" : "") + ")";
      r.hardware = hw.value("cpu_model", std::string("unknown"));
      if (!hw.value("gpus", json::array()).empty()) r.hardware += " + " + std::to_string(hw["gpus"].size()) + " GPU";
      if (!cpu) r.note = "CPU energy not measured: " + e["cpu_energy"].value("note", std::string(""));
    }
    r.cpu_model = hw.value("cpu_model", std::string(""));
    r.cpu_count = hw.value("cpus", 0);
    r.gpu_count = static_cast<int>(hw.value("gpus", json::array()).size());
    if (r.gpu_count > 0) r.gpu_model = hw["gpus"][0].get<std::string>();
    rows.push_back(r);
  }
  if (!o.references.empty()) {
    std::string file = o.reference_file.empty() ? data_dir() + "/reference_costs.json" : o.reference_file;
    json refs = config::load_json_file(file);
    bool all = std::find(o.references.begin(), o.references.end(), "all") != o.references.end();
    for (const auto& want : o.references) {
      if (want == "all") continue;
      bool found = false;
      for (const auto& ref : refs) found = found || ref.value("model", std::string()) == want;
      if (!found) throw UsageError("no reference entry '" + want + "' in '" + file + "'");
    }
    for (const auto& ref : refs) {
      std::string model = ref.value("model", std::string("?"));
      if (!all && std::find(o.references.begin(), o.references.end(), model) == o.references.end()) continue;
      json p = profile(profiles, ref.value("profile", std::string("")));
      int devices = ref.value("devices", 1);
      double watts = p["watts"].get<double>() * devices;
      std::string hw = (devices > 1 ? std::to_string(devices) + " x " : "") + p.value("description", std::string(""));
      CostRow r = nominal_cost(model, hw, ref.value("hours", 0.0), watts, o);
      r.energy_source = "reference";
      r.note = ref.value("source", std::string(""));
      rows.push_back(r);
    }
  }
  return rows;
}

namespace {
std::string fmt(const char* f, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, f, v);
  return buf;
}
std::string fmt_time(double hours) {
  if (hours >= 48) return fmt("%.1f days", hours / 24);
  if (hours >= 1) return fmt("%.2f h", hours);
  return fmt("%.1f min", hours * 60);
}
}  // namespace

std::string to_markdown(const std::vector<CostRow>& rows, const EnergyOptions& o) {
  std::ostringstream ss;
  ss << "| model | hardware | time | energy | cost | CO2 |\n|---|---|---:|---:|---:|---:|\n";
  for (const auto& r : rows)
    ss << "| " << r.model << " | " << r.hardware << " | " << fmt_time(r.hours) << " | " << fmt("%.3f kWh", r.kwh) << " | "
       << fmt("%.4f ", r.cost) << o.currency << " | " << fmt("%.4f kg", r.co2_kg) << " |\n";
  ss << "\nPrice " << fmt("%.3f ", o.price_per_kwh) << o.currency << "/kWh, carbon intensity "
     << fmt("%.3f kg CO2/kWh", o.co2_per_kwh) << ", PUE " << fmt("%.2f", o.pue) << ".\n";
  for (const auto& r : rows) {
    ss << "- " << r.model << ": " << r.energy_source;
    if (r.energy_source == "nominal" || r.energy_source == "reference") ss << fmt(", %.0f W", r.power_watts);
    if (!r.note.empty()) ss << "; " << r.note;
    ss << "\n";
  }
  return ss.str();
}

json to_json(const std::vector<CostRow>& rows, const EnergyOptions& o) {
  json out = {{"price_per_kwh", o.price_per_kwh}, {"co2_per_kwh", o.co2_per_kwh}, {"pue", o.pue}, {"currency", o.currency},
              {"rows", json::array()}};
  for (const auto& r : rows)
    out["rows"].push_back({{"model", r.model}, {"hardware", r.hardware}, {"hours", r.hours}, {"energy_kwh", r.kwh},
                           {"cost", r.cost}, {"co2_kg", r.co2_kg}, {"energy_source", r.energy_source},
                           {"power_watts", r.power_watts}, {"note", r.note}});
  return out;
}

std::string to_codecarbon_csv(const std::vector<CostRow>& rows, const EnergyOptions& o) {
  std::ostringstream ss;
  ss << "timestamp,project_name,run_id,duration,emissions,emissions_rate,cpu_power,gpu_power,ram_power,cpu_energy,"
        "gpu_energy,ram_energy,energy_consumed,country_iso_code,country_name,region,cloud_provider,cloud_region,os,"
        "python_version,codecarbon_version,cpu_count,cpu_model,gpu_count,gpu_model,longitude,latitude,ram_total_size,"
        "tracking_mode,on_cloud,pue,"
        // CodeCarbon 3.x's further columns, appended (its reader matches the set, in any order; ours
        // keep their places): experiment_id, water_consumed, cpu/gpu/ram_utilization_percent,
        // ram_used_gb, wue. Unknown ones stay empty, as the location columns; water_consumed and
        // wue are 0, CodeCarbon's own values without a water usage effectiveness.
        "experiment_id,water_consumed,cpu_utilization_percent,gpu_utilization_percent,ram_utilization_percent,"
        "ram_used_gb,wue\n";
  char ts[32];
  std::time_t now = std::time(nullptr);
  std::strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%S", std::gmtime(&now));
  utsname u{};
  uname(&u);
  auto quote = [](std::string s) {
    std::string out = "\"";
    for (char c : s) out += c == '"' ? std::string("\"\"") : std::string(1, c);
    return out + "\"";
  };
  for (const auto& r : rows) {
    double secs = r.hours * 3600.0;
    double cpu_kwh = r.energy_source.rfind("measured", 0) == 0 ? r.cpu_kwh : r.kwh, gpu_kwh = r.gpu_kwh;
    double cpu_w = secs > 0 ? cpu_kwh * 3.6e6 / secs / o.pue : 0, gpu_w = secs > 0 ? gpu_kwh * 3.6e6 / secs / o.pue : 0;
    ss << ts << "," << quote(r.model) << "," << quote(r.model) << "," << fmt("%.3f", secs) << "," << fmt("%.9g", r.co2_kg) << ","
       << fmt("%.9g", secs > 0 ? r.co2_kg / secs : 0) << "," << fmt("%.6g", cpu_w) << "," << fmt("%.6g", gpu_w) << ",0,"
       << fmt("%.9g", cpu_kwh) << "," << fmt("%.9g", gpu_kwh) << ",0," << fmt("%.9g", r.kwh) << ",,,,,,"
       << quote(std::string(u.sysname) + "-" + u.release) << ",,net2net," << r.cpu_count << "," << quote(r.cpu_model) << ","
       << r.gpu_count << "," << quote(r.gpu_model) << ",,,," << (r.energy_source.rfind("measured", 0) == 0 ? "machine" : "nominal")
       << ",N," << fmt("%.3g", o.pue) << ",,0,,,,,0\n";
  }
  return ss.str();
}

}  // namespace net2net::metrics

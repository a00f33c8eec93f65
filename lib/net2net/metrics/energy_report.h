// The energy / cost / CO2 report of training runs (net2net-eval energy), paper-table style.
// energy = measured (the run's energy.json: RAPL + NVML) or nominal power x time; times PUE.
// cost = energy x price per kWh; CO2 = energy x carbon intensity. Power profiles and
// published reference costs are data files (data/power_profiles.json, data/reference_costs.json).
#pragma once
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

namespace net2net::metrics {

struct EnergyOptions {
  std::vector<std::string> runs;          // run directories
  std::optional<std::string> profile;     // power profile name: nominal energy
  std::optional<double> watts;            // nominal power: nominal energy
  double price_per_kwh = 0.216;           // EUR, the paper's EU average
  double co2_per_kwh = 0.296;             // kg, the paper's EU average
  double pue = 1.0;
  std::string currency = "EUR";
  std::vector<std::string> profile_files;  // extra profiles (merged over the shipped ones)
  std::vector<std::string> references;     // reference entries to include ("all" for every one)
  std::string reference_file;              // default: data/reference_costs.json
};

struct CostRow {
  std::string model, hardware, energy_source, note;
  double hours = 0, kwh = 0, cost = 0, co2_kg = 0;
  double cpu_kwh = 0, gpu_kwh = 0, power_watts = 0;
  int cpu_count = 0, gpu_count = 0;
  std::string cpu_model, gpu_model;
};

nlohmann::json load_power_profiles(const std::vector<std::string>& extra_files);

// Energy, cost and CO2 for `hours` at `watts` (nominal).
CostRow nominal_cost(const std::string& model, const std::string& hardware, double hours, double watts,
                     const EnergyOptions& o);
std::vector<CostRow> energy_report(const EnergyOptions& options);

std::string to_markdown(const std::vector<CostRow>& rows, const EnergyOptions& o);
nlohmann::json to_json(const std::vector<CostRow>& rows, const EnergyOptions& o);
// CodeCarbon's emissions.csv columns (duration s, energy kWh, emissions kg, power W).
std::string to_codecarbon_csv(const std::vector<CostRow>& rows, const EnergyOptions& o);

}  // namespace net2net::metrics

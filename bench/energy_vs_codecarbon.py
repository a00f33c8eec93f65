#!/usr/bin/env python3
"""Our energy record and CodeCarbon's for the same workload, side by side (scripts/bench.sh; run
with the python of scripts/setup_codecarbon.sh).

  energy_vs_codecarbon.py RUN_DIR -- COMMAND...

runs COMMAND (a net2net-train run writing RUN_DIR/energy.json) inside CodeCarbon's
OfflineEmissionsTracker (machine mode, 1 s samples, no network), then prints one JSON line:
ours (RUN_DIR/energy.json: measured CPU/GPU joules, or why not) and CodeCarbon's (CPU, RAM and
total kWh, and how it got the CPU's: RAPL, or the fall-back it says it used), the wall time of
each. On a machine without readable RAPL counters ours records nothing measured and says so
(net2net-eval energy then asks for a nominal power); CodeCarbon estimates from its TDP table and
the CPU load, or from a constant: the line names which.
"""
import json
import logging
import subprocess
import sys
import time

from codecarbon import OfflineEmissionsTracker


def main():
    run_dir, cmd = sys.argv[1], sys.argv[sys.argv.index("--") + 1:]
    messages = []

    class Keep(logging.Handler):  # CodeCarbon says what it falls back to in its log
        def emit(self, record):
            messages.append(record.getMessage())

    logging.getLogger("codecarbon").addHandler(Keep())
    tracker = OfflineEmissionsTracker(country_iso_code="DEU", measure_power_secs=1, save_to_file=False,
                                      tracking_mode="machine", log_level="warning")
    tracker.start()
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    tracker.stop()
    data = tracker.final_emissions_data
    modes = sorted({getattr(h, "_mode", None) or type(h).__name__ for h in tracker._hardware
                    if type(h).__name__ == "CPU"})
    ours = json.load(open(f"{run_dir}/energy.json"))
    cpu, gpu = ours["cpu_energy"], ours["gpu_energy"]
    print(json.dumps({
        "bench": "energy", "command_wall_s": wall,
        "ours": {"wall_s": ours["wall_seconds"], "cpu_seconds": ours["cpu_seconds"],
                 "cpu_kwh": cpu["joules"] / 3.6e6 if cpu["measured"] else None,
                 "gpu_kwh": gpu["joules"] / 3.6e6 if gpu["measured"] else None,
                 "cpu_note": cpu.get("note", "RAPL"), "gpu_note": gpu.get("note", "NVML")},
        "codecarbon": {"version": "3.3.2", "duration_s": data.duration, "cpu_kwh": data.cpu_energy,
                       "ram_kwh": data.ram_energy, "gpu_kwh": data.gpu_energy, "total_kwh": data.energy_consumed,
                       "cpu_power_w": data.cpu_power, "cpu_mode": ",".join(map(str, modes)),
                       "fallback": [m.strip().split("\n")[0] for m in messages if "Falling back" in m or "fall back" in m]},
    }))


if __name__ == "__main__":
    main()

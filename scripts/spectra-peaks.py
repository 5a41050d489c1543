"""Print the two peaks of each group's error spectrum (paper 003 section 4.4): the largest
amplitude at low frequency (0 <= f <= 1/(2 eps)) and the largest within one bin of 1/eps.
Usage: .venv/bin/python scripts/spectra-peaks.py RESULTS_DIR"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from analysis import error_spectra

spectra = error_spectra(sys.argv[1])
# Name each group by the settings that differ between groups (the swept axes), not all of them.
varying = sorted({k for s in spectra for k, v in s.key.items() if any(t.key.get(k) != v for t in spectra)})
for s in spectra:
    (lf, la), (ef, ea) = s.low_peak(), s.eps_peak()
    settings = ", ".join(f"{k}={s.key[k]}" for k in varying)
    print(f"{settings}: low peak f={lf:g} A={la:.2e}; 1/eps peak f={ef:g} A={ea:.2e} (n={s.n})")

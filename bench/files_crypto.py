"""Bulk AES-256-GCM per chunk: `cryptography` in the process vs the token
(SoftHSM through PKCS#11), at the chunk sizes the file format allows.

    .venv/bin/python -m bench.files_crypto      (makes a throwaway lab token)
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

from appliance.files.format import ProcessCipher, nonce
from appliance.setup import InitReport, create_lab_token, find_softhsm
from hsm import bulk
from hsm.config import HsmConfig
from hsm.keystore import Keystore

TOTAL = 64 * 1024 * 1024


def _rate(fn, chunk: int) -> float:  # type: ignore[no-untyped-def]
    data = os.urandom(chunk)
    n = max(4, TOTAL // chunk)
    start = time.perf_counter()
    for i in range(n):
        fn(i, data)
    return n * chunk / (time.perf_counter() - start) / 1e6


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        module = find_softhsm()
        conf, pin_file = create_lab_token(Path(tmp), module, "bench-files", InitReport(Path(tmp) / "x"))
        os.environ["SOFTHSM2_CONF"] = conf
        keystore = Keystore(HsmConfig(module=module, token_label="bench-files", pin_file=pin_file, softhsm_conf=conf))
        key = os.urandom(32)
        print(f"{'chunk':>8} {'process seal':>14} {'process open':>14} {'hsm seal':>10} {'hsm open':>10}  MB/s")
        try:
            with keystore.work() as work:
                handle = bulk.import_key(work, key)
                for chunk in (64 * 1024, 256 * 1024, 1024 * 1024):
                    proc = ProcessCipher(key)
                    sealed = proc.seal(nonce(0, False), os.urandom(chunk))
                    p_seal = _rate(lambda i, d, proc=proc: proc.seal(nonce(i, False), d), chunk)
                    p_open = _rate(lambda i, d, proc=proc, sealed=sealed: proc.open(nonce(0, False), sealed), chunk)
                    h_seal = _rate(lambda i, d: bulk.seal(handle, nonce(i, False), d), chunk)
                    h_open = _rate(lambda i, d, sealed=sealed: bulk.open_(handle, nonce(0, False), sealed), chunk)
                    print(f"{chunk // 1024:>6}Ki {p_seal:>14.0f} {p_open:>14.0f} {h_seal:>10.0f} {h_open:>10.0f}")
        finally:
            keystore.close()


if __name__ == "__main__":
    main()

"""Every tampering of the stored format is refused with one generic error and
an audit entry: truncation, reordered or duplicated chunks, data after the final
chunk, a chunk or a whole blob from another file, a flipped byte, an edited
header, a swapped wrapped key, an edited size. Known-answer checks of the layout."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import delete, func, select, update

from appliance.core import Appliance
from appliance.errors import IntegrityFailure
from appliance.files import format as fmt
from appliance.files.models import FileChunk, FileVersion
from appliance.models import AuditEntry
from tests.files.conftest import CHUNK, owner_with_vault, upload

Parts = list[bytes]


def read_parts(app: Appliance, v: FileVersion) -> Parts:
    n = fmt.chunk_count(v.size, v.chunk_size)
    if v.store == "database":
        with app.db.read() as db:
            rows = db.execute(select(FileChunk.data).where(FileChunk.blob_id == v.blob_id).order_by(FileChunk.seq))
            return [bytes(r) for r in rows.scalars()]
    raw = app.files.store("filesystem").path(v.blob_id).read_bytes()  # type: ignore[attr-defined]
    hlen = fmt.header_length(int.from_bytes(raw[10:12], "big"))
    parts = [raw[:hlen]]
    step = v.chunk_size + 16
    for i in range(n):
        parts.append(raw[hlen + i * step : hlen + (i + 1) * step])
    if len(raw) > hlen + sum(len(p) for p in parts[1:]):
        parts.append(raw[hlen + sum(len(p) for p in parts[1:]) :])
    return parts


def write_parts(app: Appliance, v: FileVersion, parts: Parts) -> None:
    if v.store == "database":
        with app.db.write() as db:
            db.execute(delete(FileChunk).where(FileChunk.blob_id == v.blob_id))
            db.add_all([FileChunk(blob_id=v.blob_id, seq=i, data=p) for i, p in enumerate(parts)])
        return
    app.files.store("filesystem").path(v.blob_id).write_bytes(b"".join(parts))  # type: ignore[attr-defined]


def version_of(app: Appliance, file_id: str) -> FileVersion:
    with app.db.read() as db:
        return db.execute(select(FileVersion).where(FileVersion.file_id == file_id)).scalar_one()


def flip(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 0x01]) + data[at + 1 :]


CASES: dict[str, Callable[[Parts, Parts], Parts]] = {
    "truncated (last chunk dropped)": lambda a, b: a[:-1],
    "truncated (empty)": lambda a, b: a[:1],
    "reordered": lambda a, b: [a[0], a[2], a[1], *a[3:]],
    "duplicated": lambda a, b: [a[0], a[1], a[1], *a[3:]],
    "data after the final chunk": lambda a, b: [*a, a[-1]],
    "bytes after the final chunk": lambda a, b: [*a[:-1], a[-1] + b"x"],
    "chunk from another file": lambda a, b: [a[0], a[1], b[2], *a[3:]],
    "whole blob of another file": lambda a, b: b,
    "header of another file": lambda a, b: [b[0], *a[1:]],
    "flipped byte in a middle chunk": lambda a, b: [a[0], a[1], flip(a[2], 100), *a[3:]],
    "flipped byte in the first chunk": lambda a, b: [a[0], flip(a[1], 5), *a[2:]],
    "flipped tag of the last chunk": lambda a, b: [*a[:-1], flip(a[-1], len(a[-1]) - 1)],
    "flipped salt in the header": lambda a, b: [flip(a[0], len(a[0]) - 3), *a[1:]],
    "flipped chunk size in the header": lambda a, b: [flip(a[0], 8), *a[1:]],
}


def _download_all(app: Appliance, principal: Any, file_id: str, start: int = 0, end: int | None = None) -> bytes:
    d = app.files.open_download(principal, file_id)
    d.prepare(start, end)
    out = bytearray()
    for piece in d.chunks():
        out += piece
    return bytes(out)


def _integrity_events(app: Appliance) -> int:
    with app.db.read() as db:
        return int(
            db.execute(
                select(func.count()).select_from(AuditEntry).where(AuditEntry.event == "integrity.failed")
            ).scalar_one()
        )


@pytest.fixture
def two_files(fclient: Any, files_app: Appliance) -> tuple[Any, str, str, bytes]:
    headers, vault_id = owner_with_vault(fclient, files_app)
    body_a, body_b = os.urandom(3 * CHUNK + 500), os.urandom(3 * CHUNK + 500)
    a = upload(fclient, headers, vault_id, "a.bin", body_a).json()["id"]
    b = upload(fclient, headers, vault_id, "b.bin", body_b).json()["id"]
    principal = files_app.sessions.authenticate(headers["Authorization"].split()[1], None)
    return principal, a, b, body_a


def test_tampered_content_is_refused(fclient: Any, files_app: Appliance, two_files: Any) -> None:
    principal, _, b, _ = two_files
    headers = {"Authorization": f"Bearer {principal.token.encode()}"}
    vb = version_of(files_app, b)
    for case, tamper in CASES.items():
        body_a = os.urandom(3 * CHUNK + 500)
        a = upload(fclient, headers, principal_vault(files_app, b), "a.bin", body_a).json()["id"]
        assert _download_all(files_app, principal, a) == body_a
        va = version_of(files_app, a)
        write_parts(files_app, va, tamper(read_parts(files_app, va), read_parts(files_app, vb)))
        before = _integrity_events(files_app)
        received = bytearray()
        with pytest.raises(IntegrityFailure) as caught:
            d = files_app.files.open_download(principal, a)
            d.prepare()
            for piece in d.chunks():
                received += piece
        assert len(received) < len(body_a), case  # the last byte never goes out
        assert str(caught.value) == str(IntegrityFailure()), case
        assert _integrity_events(files_app) == before + 1, case
        # A range that stops short of the end still checks the end.
        if case.startswith(("truncated (last", "data after", "bytes after", "flipped tag")):
            with pytest.raises(IntegrityFailure):
                _download_all(files_app, principal, a, 0, 9)


def principal_vault(app: Appliance, file_id: str) -> str:
    return version_of(app, file_id).vault_id


def test_swapped_wrapped_key_and_edited_size(files_app: Appliance, two_files: Any) -> None:
    principal, a, b, _ = two_files
    vb = version_of(files_app, b)
    with files_app.db.write() as db:
        db.execute(update(FileVersion).where(FileVersion.file_id == a).values(wrapped_key=vb.wrapped_key))
    with pytest.raises(IntegrityFailure):
        files_app.files.open_download(principal, a)
    # The blob id of another file (its data key stays ours): refused too.
    with files_app.db.write() as db:
        db.execute(update(FileVersion).where(FileVersion.file_id == a).values(wrapped_key=b"\x00" * 60))
    with pytest.raises(IntegrityFailure):
        files_app.files.open_download(principal, a)
    # A smaller size in the database: the last chunk no longer fits.
    principal2 = principal
    with files_app.db.write() as db:
        db.execute(update(FileVersion).where(FileVersion.file_id == b).values(size=vb.size - 1))
    with pytest.raises(IntegrityFailure):
        _download_all(files_app, principal2, b)


def test_api_answers_one_generic_error(fclient: Any, files_app: Appliance, two_files: Any) -> None:
    principal, a, _, _ = two_files
    va = version_of(files_app, a)
    parts = read_parts(files_app, va)
    write_parts(files_app, va, [parts[0], flip(parts[1], 3), *parts[2:]])
    token = principal.token
    r = fclient.get(f"/api/v1/files/{a}/content", headers={"Authorization": f"Bearer {token.encode()}"})
    assert r.status_code == 500
    assert r.json()["error"] == "integrity_failure"
    assert "tag" not in r.text.lower() and "chunk" not in r.text.lower()


def test_known_layout() -> None:
    """The header's bytes and the nonces, as docs/security.md describes them."""
    h = fmt.Header(65536, "vault=v|file=f|version=1", bytes(range(32)))
    raw = h.encode()
    assert raw[:4] == b"CFIL" and raw[4] == 1 and raw[5] == 1
    assert raw[6:10] == (65536).to_bytes(4, "big") and raw[10:12] == (24).to_bytes(2, "big")
    assert raw[12:36] == b"vault=v|file=f|version=1" and raw[36:] == bytes(range(32))
    assert fmt.Header.decode(raw) == h
    assert fmt.nonce(0, False) == bytes(12)
    assert fmt.nonce(1, True) == bytes(10) + b"\x01\x01"
    # A known answer: payload key and first chunk are fixed for a fixed key, salt and ref.
    key = fmt.payload_key(bytes(32), h)
    sealer = fmt.Sealer(fmt.ProcessCipher(key), h)
    assert list(sealer.feed(b"hello")) == []
    last = sealer.finish()
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    assert last == AESGCM(key).encrypt(bytes(11) + b"\x01", b"hello", None)
    with pytest.raises(fmt.StreamError):
        fmt.open_chunk(fmt.ProcessCipher(key), 0, False, last, 65536)

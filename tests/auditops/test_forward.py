"""Forwarding to a real syslog receiver: outage and restart lose nothing, one
forwarder per deployment (lease), UDP and TLS transports, status shows the lag."""

from __future__ import annotations

import datetime
import socket
import ssl
import threading
import time

import pytest

from appliance.auditops import Forwarder, SendFailed, parse_destination
from appliance.auditops.destination import DestinationError, Sender
from appliance.auditops.forward import state
from tests.auditops.syslog import SyslogReceiver, parse_rfc5424
from tests.support import free_port


def _append(app, n):
    with app.keystore.work() as work, app.db.write() as db:
        for i in range(n):
            app.audit.append(db, work, "test.event", actor="u", target=f"t{i}")


def _head(app):
    return state(app.db, "x", time.time()).head


def test_destinations_parse_and_bad_ones_are_refused():
    assert str(parse_destination("syslog+tcp://siem.example:514")) == "syslog+tcp://siem.example:514"
    assert parse_destination("syslog+udp://[::1]:514").host == "::1"
    assert parse_destination("syslog+tls://h:6514").transport == "tls"
    for bad in ("tcp://h:1", "syslog+tcp://h", "syslog+tcp://h:0", "syslog+tcp://u@h:1", "syslog+tcp://h:1/x"):
        with pytest.raises(DestinationError):
            parse_destination(bad)


def test_outage_buffers_and_restart_loses_nothing(app):
    port = free_port()
    receiver = SyslogReceiver(port).start()
    fwd = Forwarder(app.db, f"syslog+tcp://127.0.0.1:{port}", time.time, batch=7)
    try:
        _append(app, 20)
        assert fwd.catch_up(lambda: True) == 21  # genesis + 20
        receiver.wait_for(set(range(1, 22)))
        receiver.stop()  # SIEM outage
        _append(app, 15)
        with pytest.raises(SendFailed):
            for _ in range(5):  # the first write after the peer left may be accepted: the reset shows next
                fwd.catch_up(lambda: True)
        lagging = state(app.db, "x", time.time())
        assert lagging.lag > 0 and lagging.last_error and "refused" in lagging.last_error
        receiver.start()  # back, same port
        for _ in range(50):
            try:
                fwd.catch_up(lambda: True)
                break
            except SendFailed:
                time.sleep(0.1)
        receiver.wait_for(set(range(1, _head(app) + 1)))
        caught_up = state(app.db, "x", time.time())
        assert caught_up.lag == 0 and caught_up.last_error is None
        for m in receiver.messages:
            parse_rfc5424(m)
    finally:
        fwd.close()
        receiver.stop()


def test_one_forwarder_at_a_time(app):
    port = free_port()
    receiver = SyslogReceiver(port).start()
    dest = f"syslog+tcp://127.0.0.1:{port}"
    now = [1000.0]
    first = Forwarder(app.db, dest, lambda: now[0])
    second = Forwarder(app.db, dest, lambda: now[0])
    try:
        assert first.lease() and not second.lease()
        assert second.catch_up(lambda: True) == 0
        assert first.catch_up(lambda: True) == 1
        now[0] += 60  # the first holder died: its lease expires
        _append(app, 3)
        assert second.lease() and not first.lease()
        assert second.catch_up(lambda: True) == 3
        receiver.wait_for({1, 2, 3, 4})
        assert len(receiver.messages) == 4  # nobody sent twice
    finally:
        first.close()
        second.close()
        receiver.stop()


def test_holder_that_lost_its_lease_does_not_move_the_cursor(app):
    port = free_port()
    receiver = SyslogReceiver(port).start()
    now = [1000.0]
    fwd = Forwarder(app.db, f"syslog+tcp://127.0.0.1:{port}", lambda: now[0])
    try:
        assert fwd.lease()
        now[0] += 60
        other = Forwarder(app.db, f"syslog+tcp://127.0.0.1:{port}", lambda: now[0])
        assert other.lease()
        assert fwd.step() == 0  # sent (at least once) but the cursor stays for the holder
        assert other.step() == 1
        other.close()
    finally:
        fwd.close()
        receiver.stop()


def test_udp_datagrams(app):
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(5)
    port = sock.getsockname()[1]
    fwd = Forwarder(app.db, f"syslog+udp://127.0.0.1:{port}", time.time)
    try:
        _append(app, 2)
        assert fwd.catch_up(lambda: True) == 3
        seqs = [int(parse_rfc5424(sock.recv(65536).decode())["sd"]["coffre@32473"]["seq"]) for _ in range(3)]
        assert seqs == [1, 2, 3]
    finally:
        fwd.close()
        sock.close()


def _certificate(tmp_path):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_file, key_file


def test_tls_with_a_ca_file_and_refused_without(app, tmp_path):
    cert_file, key_file = _certificate(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_file, key_file)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    port = listener.getsockname()[1]
    received = []
    done = threading.Event()

    def serve():
        for _ in range(2):
            try:
                raw, _ = listener.accept()
            except OSError:
                return
            try:
                conn = context.wrap_socket(raw, server_side=True)
            except (ssl.SSLError, OSError):
                continue
            data = b""
            conn.settimeout(5)
            while b"test.event" not in data or data.count(b"coffre@32473") < 2:
                chunk = conn.recv(65536)
                if not chunk:
                    break
                data += chunk
            received.append(data)
            done.wait(10)  # a receiver keeps its connection open
            conn.close()

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    _append(app, 1)
    untrusting = Sender(parse_destination(f"syslog+tls://localhost:{port}"))
    with pytest.raises(SendFailed):
        untrusting.send([b"x"])  # self-signed: not in the system CAs
    fwd = Forwarder(app.db, f"syslog+tls://localhost:{port}", time.time, ca_file=str(cert_file))
    try:
        assert fwd.catch_up(lambda: True) == 2
        data = received[0]
        length, _, rest = data.partition(b" ")
        first = rest[: int(length)].decode()
        assert parse_rfc5424(first)["sd"]["coffre@32473"]["seq"] == "1"
    finally:
        done.set()
        fwd.close()
        listener.close()

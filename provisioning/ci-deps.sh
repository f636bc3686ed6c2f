#!/usr/bin/env bash
# Install what `make test-provisioning` needs on a Debian 12 host, idempotently:
#  - Debian packages the tests drive (apache2, softhsm2, nftables, openssl, ...),
#    installed only when missing and without letting dpkg start any service;
#  - controller tools pinned in provisioning/requirements.txt, in their own
#    virtualenv provisioning/.venv (ansible-core, ansible-lint, sslyze);
#  - provisioning/.wheelhouse: wheels of Coffre's pinned dependencies (and its
#    build backend) for the interpreter the appliance uses, so the tests can
#    install Coffre inside their sandbox, which has no network.
# Safe to run again: a second run installs nothing. It leaves no service
# running and nothing listening that was not before.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(dirname "$here")"
venv="$here/.venv"
wheelhouse="$here/.wheelhouse"
appliance_python=/usr/bin/python3
export PIP_CACHE_DIR="$here/.cache/pip"

apt_packages=(apache2 softhsm2 nftables openssl python3-venv python3-apt rsync
              util-linux procps iproute2 ca-certificates e2fsprogs)
# The PostgreSQL variant runs where a PostgreSQL server is installed; the role
# also wants the client metapackage, and the sandbox cannot download it.
if dpkg-query -W -f='${db:Status-Status}' postgresql 2>/dev/null | grep -qx installed; then
  apt_packages+=(postgresql-client)
fi
# systemd-analyze (package systemd) is optional: the unit test skips without it.

# What a package's service would listen on (apache2: 80 and 443).
listeners() { ss -Hltn 2>/dev/null | awk '{print $4}' | grep -E ':(80|443)$' | sort -u || true; }
apache_running() { pgrep -x apache2 >/dev/null 2>&1; }

missing=()
for p in "${apt_packages[@]}"; do
  if ! dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null | grep -qx installed; then
    missing+=("$p")
  fi
done
if ((${#missing[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "ci-deps: missing Debian packages (${missing[*]}) and not root" >&2
    exit 1
  fi
  before="$(listeners)"
  apache_before=""; if apache_running; then apache_before=1; fi
  # A policy-rc.d that forbids every service start (apache2's postinst would
  # otherwise start it on *:80), only for the duration of the install; one the
  # host already has is put back afterwards.
  policy=/usr/sbin/policy-rc.d
  saved=""
  if [[ -e $policy ]]; then
    saved="$(mktemp)"
    cp -p "$policy" "$saved"
  fi
  restore_policy() {
    if [[ -n $saved ]]; then cp -p "$saved" "$policy"; rm -f "$saved"; else rm -f "$policy"; fi
  }
  trap restore_policy EXIT
  printf '#!/bin/sh\n# ci-deps: no service starts during this install\nexit 101\n' > "$policy"
  chmod 0755 "$policy"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq || true
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  restore_policy
  trap - EXIT
  # Belt and braces: an apache2 that started anyway is stopped, and the check
  # below fails the run if something new still listens on 80 or 443.
  if [[ -z $apache_before ]] && apache_running; then
    echo "ci-deps: apache2 was started by its package; stopping it" >&2
    apache2ctl stop >/dev/null 2>&1 || true
    if [[ -d /run/systemd/system ]]; then systemctl stop apache2 >/dev/null 2>&1 || true; fi
  fi
  after="$(listeners)"
  new="$(comm -13 <(echo "$before") <(echo "$after"))"
  if [[ -n $new ]]; then
    echo "ci-deps: the install left new listeners: $new" >&2
    exit 1
  fi
fi

# Controller tools venv. Prefer the interpreter the repo's .venv was built with.
py=python3
if [[ -x "$repo/.venv/bin/python" ]]; then py="$repo/.venv/bin/python"; fi
if [[ ! -x "$venv/bin/python" ]]; then
  "$py" -m venv "$venv"
fi
want="$(grep -Ev '^\s*(#|$)' "$here/requirements.txt" | tr 'A-Z' 'a-z' | sort)"
have="$("$venv/bin/python" -m pip freeze 2>/dev/null | tr 'A-Z' 'a-z' | sort)"
if [[ -n "$(comm -23 <(echo "$want") <(echo "$have"))" ]]; then
  "$venv/bin/python" -m pip install -q --disable-pip-version-check -r "$here/requirements.txt" 2>&1 \
    | { grep -v '^WARNING: Location' || true; }
fi

# Wheelhouse: built by the appliance's own interpreter (through a throwaway
# virtualenv) so the wheels fit it; rebuilt only when pyproject.toml changes.
requirements="$("$appliance_python" - "$repo/pyproject.toml" <<'PY'
import sys, tomllib
data = tomllib.load(open(sys.argv[1], "rb"))
print("\n".join(data["build-system"]["requires"] + data["project"]["dependencies"]))
PY
)"
stamp="$(printf '%s\n' "$requirements" "$("$appliance_python" -V 2>&1)" | sha256sum | cut -d' ' -f1)"
if [[ "$(cat "$wheelhouse/.stamp" 2>/dev/null || true)" != "$stamp" ]]; then
  builder="$here/.cache/builder"
  rm -rf "$builder" "$wheelhouse"
  "$appliance_python" -m venv "$builder"
  mapfile -t reqs <<<"$requirements"
  "$builder/bin/python" -m pip wheel -q --disable-pip-version-check -w "$wheelhouse" "${reqs[@]}" 2>&1 \
    | { grep -v '^WARNING: Location' || true; }
  echo "$stamp" > "$wheelhouse/.stamp"
  rm -rf "$builder"
fi
echo "ci-deps: ok"

#!/usr/bin/env bash
# Install what `make test-provisioning` needs on a Debian 12 host, idempotently:
#  - Debian packages the tests drive (apache2, softhsm2, nftables, openssl, ...),
#    installed only when missing and without letting dpkg start any service;
#  - controller tools pinned in provisioning/requirements.txt, in their own
#    virtualenv provisioning/.venv (ansible-core, ansible-lint, sslyze).
# Safe to run again: a second run installs nothing.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(dirname "$here")"
venv="$here/.venv"

apt_packages=(apache2 softhsm2 nftables openssl python3-venv python3-apt rsync
              util-linux procps iproute2 ca-certificates)
# systemd-analyze (package systemd) is optional: the unit test skips without it.

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
  # Keep dpkg from starting apache2 on *:80 in containers: a policy-rc.d that
  # forbids service starts, only for the duration of the install.
  made_policy=""
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod 0755 /usr/sbin/policy-rc.d
    made_policy=1
  fi
  trap '[[ -n "$made_policy" ]] && rm -f /usr/sbin/policy-rc.d' EXIT
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq || true
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
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
echo "ci-deps: ok"

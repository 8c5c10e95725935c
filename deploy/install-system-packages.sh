#!/usr/bin/env bash
# Install the Debian packages a captionbot profile needs (deploy/system-packages.txt), only those missing.
#   deploy/install-system-packages.sh demo|run|test|portaudio|venv   install (as root, or via sudo)
#   deploy/install-system-packages.sh --list PROFILE                  print a profile's packages
# Without root or sudo it installs nothing and prints the one command to run, exit status 1.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
list_only=0
if [[ "${1:-}" == "--list" ]]; then list_only=1; shift; fi
profile="${1:-test}"
case "$profile" in
  demo) wanted="demo" ;;
  run) wanted="demo run" ;;
  test) wanted="demo run portaudio test" ;;
  portaudio) wanted="portaudio" ;;
  venv) wanted="venv" ;;
  *) echo "install-system-packages: unknown profile '$profile'" \
          "(use demo, run, test, portaudio or venv)" >&2; exit 2 ;;
esac

packages=()
while read -r name needed _; do
  [[ -z "$name" || "$name" == \#* ]] && continue
  [[ " $wanted " == *" $needed "* ]] && packages+=("$name")
done <"$here/system-packages.txt"

if ((list_only)); then printf '%s\n' "${packages[@]}"; exit 0; fi

if ! command -v dpkg >/dev/null 2>&1; then
  echo "install-system-packages: not a Debian/Ubuntu system; install the equivalents of:" \
       "${packages[*]}" >&2
  exit 1
fi
missing=()
for package in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "ok installed" || missing+=("$package")
done
((${#missing[@]})) || exit 0

if [[ $(id -u) -eq 0 ]]; then
  as_root=()
elif command -v sudo >/dev/null 2>&1 && { sudo -n true 2>/dev/null || [[ -t 0 ]]; }; then
  as_root=(sudo)
else
  echo "captionbot needs system packages that are missing; run: sudo apt-get install -y ${missing[*]}" >&2
  exit 1
fi
echo "installing system packages: ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
"${as_root[@]}" apt-get update -qq >/dev/null
"${as_root[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null

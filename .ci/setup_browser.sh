# Sourced by .ci/test: Debian's Chromium, which the console's browser tests run headless
# (tests/browser.py: screenshots and the rendered DOM of every page), and a font for it to draw
# text with (a slim image has none; Chromium only recommends one). Idempotent, quiet.
_mldb_missing=()
[ -x /usr/bin/chromium ] || _mldb_missing+=(chromium)
[ -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || _mldb_missing+=(fonts-dejavu-core)
if [ ${#_mldb_missing[@]} -gt 0 ]; then
    _mldb_sudo=""; [ "$(id -u)" -eq 0 ] || _mldb_sudo="sudo"
    $_mldb_sudo apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive $_mldb_sudo apt-get install -y -qq --no-install-recommends "${_mldb_missing[@]}" >/dev/null
fi
unset _mldb_missing _mldb_sudo

#!/usr/bin/env bash
# Builds the Internet-Draft: kramdown-rfc markdown -> RFC XML (v3) -> text and HTML with xml2rfc.
# Output goes to docs/draft/out/ (git-ignored), or to $1 when given.
#
# Offline by construction: every reference is written out in the markdown's YAML header, so
# nothing has to be fetched; KRAMDOWN_OFFLINE stops kramdown-rfc from fetching bibxml (it would
# insert a "broken reference" warning instead, which fails the build), and xml2rfc runs with
# --no-network and a cache directory of its own inside the output directory.
#
# Fails (exit 1) on any error and on any warning of either tool: a clean build prints nothing
# but the names of the files it made.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
src=$here/draft-pqscep-scep-pq-update.md
out=${1:-$here/out}
mkdir -p "$out"
out=$(cd "$out" && pwd)

kramdown=$(command -v kramdown-rfc || command -v kramdown-rfc2629 || true)
xml2rfc=$(command -v xml2rfc || true)
[[ -n $kramdown ]] || { echo "build.sh: kramdown-rfc not found (Debian: ruby-kramdown-rfc2629)" >&2; exit 2; }
[[ -n $xml2rfc ]] || { echo "build.sh: xml2rfc not found (pip install xml2rfc)" >&2; exit 2; }

# The draft's name (docname in the YAML header) names the outputs.
name=$(sed -n 's/^docname: *//p' "$src" | head -n1)
[[ -n $name ]] || { echo "build.sh: no docname in $src" >&2; exit 1; }
xml=$out/$name.xml
log=$out/build.log
: > "$log"

export KRAMDOWN_OFFLINE=1
export KRAMDOWN_REFCACHEDIR=$out/refcache
mkdir -p "$KRAMDOWN_REFCACHEDIR" "$out/xml2rfc-cache"

echo "== $("$kramdown" --version 2>&1 | head -n1)" >> "$log"
if ! (cd "$here" && "$kramdown" "$src") > "$xml" 2> "$out/kramdown.stderr"; then
  cat "$out/kramdown.stderr" >&2
  echo "build.sh: kramdown-rfc failed" >&2
  exit 1
fi
cat "$out/kramdown.stderr" >> "$log"

echo "== $("$xml2rfc" --version 2>&1 | head -n1)" >> "$log"
if ! "$xml2rfc" --no-network --cache "$out/xml2rfc-cache" --text --html --path "$out" "$xml" \
    > "$out/xml2rfc.stdout" 2>&1; then
  cat "$out/xml2rfc.stdout" >&2
  echo "build.sh: xml2rfc failed" >&2
  exit 1
fi
cat "$out/xml2rfc.stdout" >> "$log"

# Anything either tool said beyond "Created file ..." is a warning (or worse): fail on it.
problems=$( { cat "$out/kramdown.stderr"; grep -v -E '^ *Created file ' "$out/xml2rfc.stdout" || true; } \
            | grep -v -E '^\s*$' || true)
if [[ -n $problems ]]; then
  printf '%s\n' "$problems" >&2
  echo "build.sh: warnings in the build (see $log)" >&2
  exit 1
fi
for ext in txt html; do
  [[ -s $out/$name.$ext ]] || { echo "build.sh: $out/$name.$ext was not made" >&2; exit 1; }
done
echo "built $out/$name.txt and $out/$name.html"

#!/usr/bin/env bash
# Vendors GraphiQL and React (the browser IDE that /graphql serves) from their npm packages into
# api/graphql/ide/assets, gzipped, so the IDE works offline like /docs. Run it to change versions; it needs npm
# (the ordinary client, against the npm registry) and writes api/graphql/ide/assets/SOURCES.
set -euo pipefail
cd "$(dirname "$0")/.."
PACKAGES=(graphiql@3.8.3 react@18.2.0 react-dom@18.2.0)
FILES=(
    "graphiql-3.8.3.tgz package/graphiql.min.js graphiql.min.js"
    "graphiql-3.8.3.tgz package/graphiql.min.css graphiql.min.css"
    "react-18.2.0.tgz package/umd/react.production.min.js react.production.min.js"
    "react-dom-18.2.0.tgz package/umd/react-dom.production.min.js react-dom.production.min.js"
)
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent "${PACKAGES[@]}" >/dev/null)
out=api/graphql/ide/assets
rm -rf "$out" && mkdir -p "$out"
{
    echo "# Vendored by scripts/vendor_graphiql.sh from npm: tarball sha256, then each file's sha256 (uncompressed)."
    (cd "$work" && sha256sum ./*.tgz)
} > "$out/SOURCES"
for entry in "${FILES[@]}"; do
    read -r tarball member name <<< "$entry"
    tar -xzf "$work/$tarball" -C "$work" "$member"
    gzip -9 -n -c "$work/$member" > "$out/$name.gz"
    (cd "$work" && sha256sum "$member" | sed "s|$member|$name|") >> "$out/SOURCES"
    rm -rf "$work/package"
done
ls -l "$out"

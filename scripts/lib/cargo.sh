# Sourced by the scripts: where cargo puts what it builds.
#
# cargo's own answer (`cargo metadata`), so CARGO_TARGET_DIR, a `build.target-dir` in a
# .cargo/config.toml and the default ./target all work; a script that assumed ./target
# built elsewhere and then found no binary.

# Prints the directory of release builds (by default ./target/ + release).
release_dir() {
  local dir
  dir=$(cargo metadata --no-deps --format-version 1 --locked \
    | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])') || return 1
  printf '%s/release\n' "$dir"
}

# Builds the node-side programs (lct-hosts, lct-fw, lct-dns, lct-mesh: what `lct-inventory install`
# copies to every node) without the `linode` feature, in a cargo invocation of their own (a
# workspace build unifies features and would link the Linode client: reqwest, hyper,
# rustls), and puts them in PROFILE_DIR/node-side, where lct-inventory install takes them
# from (lct_inventory::install::node_side_path). Builds and the controller's programs of
# the same name are left alone.
#   build_node_side release|dev
build_node_side() {
  local profile="$1" dir out
  dir=$(release_dir) || return 1
  dir="${dir%/release}"
  out="$dir/$([ "$profile" = dev ] && echo debug || echo "$profile")"
  local keep
  keep=$(mktemp -d)
  # The controller's builds of these programs (if any) are kept aside while the lean ones
  # are built into the same place (sharing the dependencies already built), then restored.
  for b in lct-hosts lct-fw lct-dns lct-mesh; do [ -e "$out/$b" ] && cp -p "$out/$b" "$keep/"; done
  cargo build --locked --profile "$profile" --no-default-features -p lct-hosts -p lct-fw -p lct-dns -p lct-mesh || return 1
  mkdir -p "$out/node-side"
  for b in lct-hosts lct-fw lct-dns lct-mesh; do
    cp -p "$out/$b" "$out/node-side/$b.new" && mv "$out/node-side/$b.new" "$out/node-side/$b"
  done
  for b in lct-hosts lct-fw lct-dns lct-mesh; do [ -e "$keep/$b" ] && cp -p "$keep/$b" "$out/$b"; done
  rm -rf "$keep"
}

# shellcheck shell=bash
# What examples/redis/run and examples/postgres/run share: the numbered steps and
# their failure report, the image cache (mmdebstrap -> umoci), the bundle, the
# veth and its addresses, the container's lifecycle through $OCIRUN, and the
# cleanup and leftovers check. Sourced, not run; see examples/README.md.
#
# The caller sets, before sourcing: ex_name (redis, postgres: the image tag and
# the prefix of every name), ex_letter (one letter for interface names).
# shellcheck disable=SC2154  # ex_name, ex_letter: set by the run script
# shellcheck disable=SC2016  # '$1' in mmdebstrap hooks and '$(...)' in apt formats are theirs to expand

: "${ex_name:?}" "${ex_letter:?}"
ex_repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
# shellcheck disable=SC2034  # used by the run scripts
ex_lib="$ex_repo/examples/lib"
prog="examples/$ex_name/run"

# Bump when the way images are built changes, so that stale cached images are rebuilt.
EX_RECIPE=2
EX_SUITE=bookworm     # Debian 12

# --- runtime, names ---------------------------------------------------------------------
ocirun_arg="${OCIRUN:-$ex_repo/.venv/bin/ocirun}"
ocirun=""                       # resolved in ex_setup
ex_tag="$$"                     # unique on this machine while we run
ex_cache="${EXAMPLE_CACHE:-$ex_repo/examples/out/images}"
ex_work=""                      # the run's scratch directory (bundle, logs, data)
ex_containers=()                # container ids we created (deleted in cleanup)
ex_veth_host="ex${ex_letter}${ex_tag}h"
ex_veth_ctr="ex${ex_letter}${ex_tag}c"
ex_cgroup_names=()              # single-level cgroupsPath names we asked for

# --- steps and failures -------------------------------------------------------------------
step_no=0
step_name="start"
step() {
    step_no=$((step_no + 1))
    step_name="$*"
    printf '\n==> %d. %s\n' "$step_no" "$*"
}
say() { printf '    %s\n' "$*"; }
die() { echo "$prog: step $step_no ($step_name): $*" >&2; exit 1; }
indent() { sed 's/^/    /'; }

# TEXT with the repository's path and $ex_work abbreviated.
ex_abbrev() {
    local text="${*//$ex_repo\//}"
    [ -z "$ex_work" ] || text="${text//$ex_work/\$work}"
    printf '%s' "$text"
}
# ARGS as a shell would need them typed (quoted only where needed).
ex_quote() {
    local a out=()
    for a in "$@"; do
        if [[ -n "$a" && "$a" =~ ^[A-Za-z0-9_./:=@%+,-]+$ ]]; then
            out+=("$a")
        else
            out+=("'${a//\'/\'\\\'\'}'")
        fi
    done
    printf '%s' "${out[*]}"
}
# Shows a command (abbreviated), runs it, indents its output.
show() {
    printf '    $ %s\n' "$(ex_abbrev "$(ex_quote "$@")")"
    "$@" 2>&1 | sed 's/^/      /'
}

# The last command that failed outside a condition (set -E: in functions too), for the report.
ex_failed=""
trap 'ex_failed="$BASH_COMMAND (${BASH_SOURCE[0]##*/} line $LINENO, status $?)"' ERR

ex_on_exit() {
    local rc=$?
    trap - EXIT INT TERM ERR
    if [ "$rc" != 0 ]; then
        echo >&2
        echo "$prog: FAILED at step $step_no ($step_name), exit status $rc" >&2
        [ -z "$ex_failed" ] || echo "$prog: the command that failed: $ex_failed" >&2
        ex_show_logs >&2
        echo "$prog: cleaning up" >&2
    fi
    ex_cleanup || true
    if [ "$rc" != 0 ]; then
        ex_leftovers >&2 || true
    fi
    exit "$rc"
}
trap ex_on_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

ex_logs=()    # container logs worth showing when a step fails
ex_show_logs() {
    local log
    for log in "${ex_logs[@]}"; do
        [ -s "$log" ] || continue
        echo "--- last lines of ${log##*/}:"
        tail -n 25 "$log" | indent
    done
}

# --- setup --------------------------------------------------------------------------------
# ex_setup CLIENT_PACKAGE...: root, packages (scripts/setup --examples), the runtime.
ex_setup() {
    [ "$(id -u)" = 0 ] || die "run me as root (mmdebstrap, umoci unpack, veths and containers need it)"
    "$ex_repo/scripts/setup" --examples | indent
    if [[ "$ocirun_arg" == */* ]]; then
        ocirun="$ocirun_arg"
    else
        ocirun="$(command -v "$ocirun_arg")" || die "OCIRUN=$ocirun_arg: not found in PATH"
    fi
    [ -x "$ocirun" ] || die "the runtime $ocirun is not executable (OCIRUN=/path/to/runtime; default .venv/bin/ocirun)"
    say "runtime: $ocirun ($("$ocirun" --version 2>/dev/null | head -n 1))"
    ex_work="$(mktemp -d "/tmp/ocirun-example-$ex_name.XXXXXX")"
    chmod 0755 "$ex_work"    # the services' users must reach their bind-mounted files
    say "scratch directory: $ex_work"
}

# --- the image ------------------------------------------------------------------------------
# The Debian sources mmdebstrap uses: the host's own, from apt's configuration (only the
# bookworm suites, so third-party repositories on the host are left out), unless
# EXAMPLE_APT_SOURCES gives one-line entries ("deb URI SUITE COMPONENT...", newline-separated).
ex_apt_sources() {
    if [ -n "${EXAMPLE_APT_SOURCES:-}" ]; then
        printf '%s\n' "$EXAMPLE_APT_SOURCES"
        return
    fi
    local arch
    arch="$(dpkg --print-architecture)"
    apt-get indextargets --format '$(SITE) $(RELEASE) $(COMPONENT) $(ARCHITECTURE)' 'Identifier: Packages' |
        awk -v suite="$EX_SUITE" -v arch="$arch" '
            $4 == arch && ($2 == suite || $2 == suite "-updates" || $2 == suite "-security") {
                key = $1 " " $2
                if (!(key in comps)) order[n++] = key
                comps[key] = comps[key] " " $3
            }
            END { for (i = 0; i < n; i++) print "deb " order[i] comps[order[i]] }'
}

# ex_image PACKAGES_ARRAY HOOKS_ARRAY CONFIG_ARRAY FILES...: build (or reuse) the OCI image
# layout for $ex_name and set ex_image to it. PACKAGES are installed with mmdebstrap on
# top of Debian's Essential set; HOOKS are extra mmdebstrap --customize-hook commands;
# CONFIG are `umoci config` options; FILES are files the hooks copy in (their contents
# are part of the cache key). The key is everything that goes into the image: recipe,
# suite, architecture, sources, packages, hooks, config, files.
ex_image=""
ex_image() {
    local -n ex_i_pkgs="$1" ex_i_hooks="$2" ex_i_conf="$3"
    local names=("$1" "$2" "$3") arch sources key f
    shift 3
    arch="$(dpkg --print-architecture)"
    sources="$(ex_apt_sources)"
    [ -n "$sources" ] || die "no Debian $EX_SUITE sources in apt's configuration; set EXAMPLE_APT_SOURCES='deb http://MIRROR/debian $EX_SUITE main'"
    key="$(
        {
            printf 'recipe %s\nsuite %s\narch %s\n%s\n' "$EX_RECIPE" "$EX_SUITE" "$arch" "$sources"
            printf 'package %s\n' "${ex_i_pkgs[@]}" | sort
            printf 'hook %s\n' "${ex_i_hooks[@]//$ex_repo\//}"   # not where the checkout is
            printf 'config %s\n' "${ex_i_conf[@]}"
            for f in "$@"; do printf 'file %s\n' "${f##*/}"; cat "$f"; done
        } | sha256sum | cut -c1-16
    )"
    ex_image="$ex_cache/$ex_name-$key"
    if [ -f "$ex_image/index.json" ]; then
        say "cached image: ${ex_image#"$ex_repo"/} (delete it, or change the package list, to rebuild)"
        return
    fi
    mkdir -p "$ex_cache"
    # One builder per image at a time (parallel runs wait, then reuse the result).
    exec 8>"$ex_cache/.lock-$ex_name"
    flock 8
    if [ ! -f "$ex_image/index.json" ]; then
        ex_build_image "$ex_image" "$arch" "$sources" "${names[@]}"
        # Older builds of this example (another package list, recipe or sources) go.
        for f in "$ex_cache/$ex_name"-*; do
            [ "$f" = "$ex_image" ] || [ "$f" = "$ex_image.bundle" ] || [ ! -d "$f" ] ||
                rm -rf --one-file-system "$f"
        done
    fi
    flock -u 8
    exec 8>&-
}

ex_build_image() {  # LAYOUT ARCH SOURCES PKGS_NAME HOOKS_NAME CONFIG_NAME
    local img="$1" arch="$2" sources="$3"
    local -n ex_b_pkgs="$4" ex_b_hooks="$5" ex_b_conf="$6"
    local tmp layer log start=$SECONDS include hook_args=() h
    tmp="$(mktemp -d "$ex_cache/.build-$ex_name.XXXXXX")"
    layer="$tmp/rootfs.tar"
    log="$tmp/mmdebstrap.log"
    include="$(IFS=,; echo "${ex_b_pkgs[*]}")"
    for h in "${ex_b_hooks[@]}"; do hook_args+=(--customize-hook="$h"); done
    say "building the image: mmdebstrap $EX_SUITE, Essential + $include (the first time takes a few minutes)"
    mapfile -t srcs <<<"$sources"
    if ! mmdebstrap --mode=root --variant=essential --architectures="$arch" \
            --include="$include" \
            --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
            --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/info/*' \
            --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-include=/usr/share/locale/locale.alias' \
            --skip=output/dev --skip=cleanup/run \
            --customize-hook='rm -f "$1"/etc/resolv.conf "$1"/etc/machine-id "$1"/var/cache/ldconfig/aux-cache' \
            --customize-hook='find "$1"/run -mindepth 1 -maxdepth 1 ! -name lock -exec rm -rf {} +' \
            --customize-hook="echo $ex_name >\"\$1/etc/hostname\"" \
            --customize-hook="printf '127.0.0.1 localhost\\n::1 localhost ip6-localhost ip6-loopback\\n127.0.1.1 $ex_name\\n' >\"\$1/etc/hosts\"" \
            "${hook_args[@]}" \
            "$EX_SUITE" "$layer" "${srcs[@]}" >"$log" 2>&1; then
        tail -n 30 "$log" | indent
        rm -rf --one-file-system "$tmp"
        die "mmdebstrap failed (log above)"
    fi
    # An empty /dev (the runtime mounts its own there): --skip=output/dev leaves out the
    # directory with the host's device nodes. (mmdebstrap's own /run cleanup is skipped for
    # the services' run directories made by the hooks; the hook above empties the rest.)
    mkdir -m 0755 "$tmp/dev"
    tar -C "$tmp" --append --file "$layer" --owner=0 --group=0 --numeric-owner ./dev
    rmdir "$tmp/dev"
    say "root filesystem: $(du -h "$layer" | cut -f1) uncompressed ($((SECONDS - start)) s)"
    local layout="$tmp/layout"
    {
        umoci init --layout "$layout"
        umoci new --image "$layout:$ex_name"
        umoci raw add-layer --image "$layout:$ex_name" \
            --history.created_by "mmdebstrap --variant=essential --include=$include $EX_SUITE" \
            --history.comment "Debian $EX_SUITE: Essential + $include" "$layer"
        umoci config --image "$layout:$ex_name" \
            --author "ocirun examples/$ex_name/run" \
            --config.label "org.opencontainers.image.title=$ex_name" \
            --config.label "org.opencontainers.image.description=Debian $EX_SUITE with $include (ocirun example)" \
            --config.label "io.ocirun.example.recipe=$EX_RECIPE" \
            --history.comment "configure the $ex_name service" \
            "${ex_b_conf[@]}"
        umoci gc --layout "$layout"
    } >>"$log" 2>&1 || { tail -n 30 "$log" | indent; rm -rf --one-file-system "$tmp"; die "umoci failed (log above)"; }
    mv -T "$layout" "$img"
    rm -rf --one-file-system "$tmp"
    say "image: ${img#"$ex_repo"/} ($(du -sh "$img" | cut -f1), built in $((SECONDS - start)) s)"
}

# ex_bundle DIR: a runtime bundle for one run: DIR/config.json is umoci's, and its root
# is the image unpacked once by `umoci unpack` next to the cached layout. The root is
# mounted read-only, so every run can share it, as engines share image layers (a
# fresh unpack costs 10-30 s on this kind of machine).
ex_bundle() {
    local dir="$1" unpacked="$ex_image.bundle" start=$SECONDS tmp
    if [ ! -f "$unpacked/.complete" ]; then
        exec 8>"$ex_cache/.lock-$ex_name"
        flock 8
        if [ ! -f "$unpacked/.complete" ]; then
            rm -rf --one-file-system "$unpacked"
            tmp="$ex_cache/.unpack-$ex_name.$$"
            rm -rf --one-file-system "$tmp"
            umoci unpack --image "$ex_image:$ex_name" "$tmp" >/dev/null || die "umoci unpack failed"
            touch "$tmp/.complete"
            mv -T "$tmp" "$unpacked"
            say "unpacked the image: umoci unpack --image ${ex_image#"$ex_repo"/}:$ex_name ${unpacked#"$ex_repo"/} ($((SECONDS - start)) s)"
        fi
        flock -u 8
        exec 8>&-
    else
        say "unpacked image: ${unpacked#"$ex_repo"/} (umoci unpack, once per image)"
    fi
    mkdir -p "$dir"
    cp "$unpacked/config.json" "$dir/config.json"
    ex_rootfs="$unpacked/rootfs"
    say "bundle: $dir: umoci's config.json; root $(ex_abbrev "$ex_rootfs") ($(du -sh "$ex_rootfs" | cut -f1), read-only)"
}

# ex_ids USER: "UID:GID" of USER in the bundle's /etc/passwd.
ex_ids() {
    local ids
    ids="$(awk -F: -v u="$1" '$1 == u { print $3 ":" $4 }' "$ex_rootfs/etc/passwd")"
    [ -n "$ids" ] || die "no user $1 in the image's /etc/passwd"
    echo "$ids"
}

# --- network --------------------------------------------------------------------------------
# EXAMPLE_SUBNET: an IPv4 network for the veth pair; a /30 is used as it is (host .1,
# container .2), a larger one is a pool in which a free /30 is picked (default
# 10.214.0.0/16, starting from one chosen by our pid, so parallel runs differ).
ex_ip2int() { local IFS=.; read -r a b c d <<<"$1"; echo $(((a << 24) | (b << 16) | (c << 8) | d)); }
ex_int2ip() { echo "$((($1 >> 24) & 255)).$((($1 >> 16) & 255)).$((($1 >> 8) & 255)).$(($1 & 255))"; }
ex_subnet_free() {  # NETWORK/30: nothing on the host has an address or a route in it
    [ -z "$(ip -4 -o addr show to "$1")" ] && [ -z "$(ip -4 route show root "$1")" ] &&
        ! ip -4 route show match "$1" | grep -qv '^default'   # only the default route covers it
}
ex_pick_subnet() {
    local spec="${EXAMPLE_SUBNET:-10.214.0.0/16}" net plen base size count i start cand
    net="${spec%/*}"
    plen="${spec#*/}"
    if ! [[ "$spec" == */* && "$net" =~ ^[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+$ && "$plen" =~ ^[0-9]+$ ]] ||
        [ "$plen" -lt 8 ] || [ "$plen" -gt 30 ]; then
        die "EXAMPLE_SUBNET=$spec: want an IPv4 network with a prefix length from 8 to 30"
    fi
    size=$((1 << (32 - plen)))
    base=$(( $(ex_ip2int "$net") & ~(size - 1) & 0xffffffff ))
    count=$((size / 4))
    start=$((ex_tag % count))
    for ((i = 0; i < count && i < 256; i++)); do
        cand="$(ex_int2ip $((base + ((start + i) % count) * 4)))/30"
        if ex_subnet_free "$cand"; then
            ex_subnet="$cand"
            ex_host_ip="$(ex_int2ip $((base + ((start + i) % count) * 4 + 1)))"
            ex_ctr_ip="$(ex_int2ip $((base + ((start + i) % count) * 4 + 2)))"
            return
        fi
    done
    die "no free /30 in EXAMPLE_SUBNET=$spec (every one tried has an address or route on this host)"
}

# Does the runtime move network devices itself (linux.netDevices, runtime-spec 1.3)?
# runc 1.1 does not know the field (it ignores it): then the run script moves the
# container's end itself between create and start, as a CNI plugin would.
ex_netdev_mode() {
    if "$ocirun" features 2>/dev/null | python3 -c '
import json, sys
sys.exit(0 if json.load(sys.stdin).get("linux", {}).get("netDevices", {}).get("enabled") else 1)'; then
        echo config
    else
        echo manual
    fi
}

# The veth pair goes with the container's network namespace; the kernel frees that
# asynchronously after the last process is gone (it can take seconds under load):
# wait for it (30 s at most).
ex_wait_veth_gone() {
    local i
    for ((i = 0; i < 300; i++)); do
        ip link show dev "$ex_veth_host" >/dev/null 2>&1 || ip link show dev "$ex_veth_ctr" >/dev/null 2>&1 ||
            return 0
        sleep 0.1
    done
    return 1
}

ex_subnet=""
ex_make_veth() {  # a new pair (again after a container is deleted: the same names and subnet)
    [ -n "$ex_subnet" ] || ex_pick_subnet
    ex_netdev="$(ex_netdev_mode)"
    ex_wait_veth_gone || die "the previous veth pair $ex_veth_host is still there"
    ip link add "$ex_veth_host" type veth peer name "$ex_veth_ctr" || die "ip link add $ex_veth_host failed"
    ip addr add "$ex_host_ip/30" dev "$ex_veth_host"
    ip link set "$ex_veth_host" up
    if [ "$ex_netdev" = config ]; then
        # A permanent address on the device: the runtime carries it into the namespace.
        ip addr add "$ex_ctr_ip/30" dev "$ex_veth_ctr"
        say "veth $ex_veth_host ($ex_host_ip/30, host) <-> $ex_veth_ctr ($ex_ctr_ip/30), moved in as eth0 by the runtime (linux.netDevices)"
    else
        say "veth $ex_veth_host ($ex_host_ip/30, host) <-> $ex_veth_ctr: $(basename "$ocirun") does not support linux.netDevices; moved in as eth0 ($ex_ctr_ip/30) by this script after create"
    fi
}

# The manual move, for runtimes without netDevices: between create and start.
ex_move_veth_manually() {  # PID
    local pid="$1"
    ip link set dev "$ex_veth_ctr" netns "$pid" name eth0
    nsenter --net="/proc/$pid/ns/net" sh -c "ip addr add $ex_ctr_ip/30 dev eth0 && ip link set eth0 up && ip link set lo up"
}

# A summary of what the service's config.json says.
ex_describe_config() {  # CONFIG
    python3 - "$1" <<'EOF' | indent
import json, sys
c = json.load(open(sys.argv[1]))
p, l = c["process"], c["linux"]
print(f"process: {' '.join(p['args'])}")
print(f"  as {p['user']['uid']}:{p['user']['gid']}, capabilities: {p['capabilities']['bounding'] or 'none'}, "
      f"noNewPrivileges: {p['noNewPrivileges']}")
writable = [f"{m['destination']} ({m['type']})" for m in c["mounts"]
            if m["type"] in ("tmpfs", "bind") and "ro" not in m.get("options", [])
            and not m["destination"].startswith("/dev")]
print(f"root: read-only: {c['root']['readonly']}; writable: {', '.join(writable)}")
print(f"limits: memory {l['resources']['memory']['limit'] // 2**20} MiB, pids {l['resources']['pids']['limit']}, "
      f"nofile {p['rlimits'][0]['hard']}; cgroupsPath {l['cgroupsPath']}")
s = l["seccomp"]
print(f"seccomp: default {s['defaultAction']} (errno {s.get('defaultErrnoRet')}), {len(s['syscalls'])} rules, "
      f"{sum(len(r['names']) for r in s['syscalls'] if r['action'] == 'SCMP_ACT_ALLOW')} syscall names allowed, "
      f"architectures {', '.join(s['architectures'])}")
print(f"netDevices: {l.get('netDevices', 'none (the script moves the device)')}")
EOF
}

# --- the container ----------------------------------------------------------------------------
ex_status() {  # ID: its status, or "gone"
    "$ocirun" state "$1" 2>/dev/null |
        python3 -c 'import json, sys; print(json.load(sys.stdin)["status"])' 2>/dev/null || echo gone
}

# ex_start ID LOG: create (the container's stdout and stderr go to LOG) and start.
ex_start() {
    local id="$1" log="$2" pid
    ex_containers+=("$id")
    ex_logs+=("$log")
    printf '    $ %s  >>%s 2>&1\n' \
        "$(ex_abbrev "$ocirun" create --bundle "$ex_work/bundle" --pid-file "$ex_work/$id.pid" "$id")" "$(ex_abbrev "$log")"
    "$ocirun" create --bundle "$ex_work/bundle" --pid-file "$ex_work/$id.pid" "$id" \
        </dev/null >>"$log" 2>&1 || die "create failed"
    pid="$(cat "$ex_work/$id.pid")"
    [ "$ex_netdev" = config ] || ex_move_veth_manually "$pid"
    show "$ocirun" start "$id" || die "start failed"
    say "status: $(ex_status "$id"), pid $pid, the service's output goes to ${log/#$ex_work/\$work}"
}

# ex_wait_ready ID WHAT SECONDS COMMAND...: poll COMMAND until it succeeds; fail early if
# the container stops.
ex_wait_ready() {
    local id="$1" what="$2" limit="$3" start=$SECONDS st
    shift 3
    while ! "$@" >/dev/null 2>&1; do
        st="$(ex_status "$id")"
        [ "$st" = running ] || die "the container is $st before $what"
        [ $((SECONDS - start)) -lt "$limit" ] || die "$what: not within $limit s"
        sleep 0.2
    done
    say "$what after $((SECONDS - start)) s"
}

# What the kernel says about the container's process (from the host, /proc/PID).
ex_show_process() {  # PID
    local pid="$1"
    say "the service's process, as the host's /proc/$pid sees it:"
    awk '$1 ~ /^(Uid|Gid|NoNewPrivs|Seccomp|CapEff|CapBnd):$/ { printf "      %-11s %s\n", $1, $2 }' "/proc/$pid/status"
    awk '$5 == "/" { printf "      root:       %s\n", ($6 ~ /(^|,)ro(,|$)/ ? "read-only" : "writable") }' "/proc/$pid/mountinfo"
}

ex_show_ps_and_stats() {  # ID
    show "$ocirun" ps "$1" || die "ps failed"
    local stats
    printf '    $ %s events --stats %s   (a summary of its JSON)\n' "$(ex_abbrev "$ocirun")" "$1"
    stats="$("$ocirun" events --stats "$1")" || die "events --stats failed"
    python3 - "$stats" <<'EOF' || die "events --stats printed no stats: $stats"
import json, sys
data = json.loads(sys.argv[1])["data"]
usage = data["memory"]["usage"]
pids = data["pids"]
print(f"      memory: {usage['usage'] / 2**20:.1f} MiB used, limit {usage['limit'] / 2**20:.0f} MiB")
print(f"      pids:   {pids['current']} of {pids.get('limit', 'no limit')}")
print(f"      cpu:    {data['cpu']['usage']['total'] / 1e9:.2f} s")
EOF
}

# ex_stop ID LOG TERM_LINE CLEAN_LINE: SIGTERM, wait for stopped; in LOG the service must
# say it got SIGTERM (TERM_LINE) and that it shut down cleanly (CLEAN_LINE, after it); delete.
ex_stop() {
    local id="$1" log="$2" term="$3" clean="$4" start=$SECONDS
    show "$ocirun" kill "$id" TERM || die "kill TERM failed"
    while [ "$(ex_status "$id")" != stopped ]; do
        [ $((SECONDS - start)) -lt 60 ] || die "still $(ex_status "$id") 60 s after SIGTERM"
        sleep 0.2
    done
    say "stopped after $((SECONDS - start)) s; its log from the signal on:"
    awk -v t="$term" 'index($0, t) { on = 1 } on' "$log" | cut -c1-150 | indent
    awk -v t="$term" -v c="$clean" 'index($0, t) { on = 1 } on && index($0, c) { ok = 1 } END { exit !ok }' "$log" ||
        die "no clean shutdown in the log: '$term' then '$clean' expected"
    show "$ocirun" delete "$id" || die "delete failed"
    [ "$(ex_status "$id")" = gone ] || die "the container is still known after delete"
}

# --- cleanup and the leftovers check -------------------------------------------------------
ex_cgroup_dirs() {  # every directory named after one of our cgroups, in any hierarchy
    local n
    for n in "${ex_cgroup_names[@]}"; do
        find /sys/fs/cgroup -maxdepth 3 -type d -name "$n" 2>/dev/null
    done
}

ex_cleanup() {
    local id d
    for id in "${ex_containers[@]}"; do
        [ "$(ex_status "$id")" = gone ] || "$ocirun" delete --force "$id" >/dev/null 2>&1 || true
    done
    ex_wait_veth_gone || true
    ip link del "$ex_veth_host" >/dev/null 2>&1 || true
    ip link del "$ex_veth_ctr" >/dev/null 2>&1 || true
    while read -r d; do [ -z "$d" ] || rmdir "$d" 2>/dev/null || true; done < <(ex_cgroup_dirs | sort -r)
    if [ -n "$ex_work" ] && [ -d "$ex_work" ]; then
        if grep -qF " $ex_work" /proc/self/mountinfo; then
            echo "$prog: something is still mounted under $ex_work; not removing it" >&2
        else
            rm -rf --one-file-system "$ex_work"
        fi
    fi
}

ex_leftovers() {  # prints what is left and fails, or succeeds quietly
    local left=() id
    for id in "${ex_containers[@]}"; do
        [ "$(ex_status "$id")" = gone ] || left+=("container $id")
    done
    ip link show dev "$ex_veth_host" >/dev/null 2>&1 && left+=("interface $ex_veth_host")
    ip link show dev "$ex_veth_ctr" >/dev/null 2>&1 && left+=("interface $ex_veth_ctr")
    [ -z "$ex_work" ] || ! grep -qF " $ex_work" /proc/self/mountinfo || left+=("mounts under $ex_work")
    [ -z "$ex_work" ] || [ ! -e "$ex_work" ] || left+=("directory $ex_work")
    while read -r d; do [ -z "$d" ] || left+=("cgroup $d"); done < <(ex_cgroup_dirs)
    if [ ${#left[@]} -gt 0 ]; then
        echo "$prog: left behind: ${left[*]}"
        return 1
    fi
}

# ex_finish MESSAGE: clean up, check nothing is left, print the OK line.
ex_finish() {
    step "clean up and check nothing is left"
    ex_cleanup
    ex_leftovers || die "leftovers (above)"
    say "no containers, interfaces, mounts, cgroups or scratch files left"
    echo
    echo "OK $prog: $*"
}

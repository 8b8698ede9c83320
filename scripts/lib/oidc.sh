# shellcheck shell=bash
# A real OpenID provider for tests/identity.rs and tests/browser.rs: the
# `oidc-provider` package from the npm registry, pinned by
# tests/support/oidc/package-lock.json and run by the tests themselves
# (tests/support/oidc/provider.mjs, one instance per test on a free port).
#
# Source after scripts/lib/services.sh. Idempotent: `npm ci` runs only when
# node_modules is missing or older than the lock file.
#
#   ensure_oidc_provider   # needs node >= 20 and npm on PATH

ensure_oidc_provider() {
    local dir=$ROOT/tests/support/oidc
    command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 || {
        svc_die "node and npm are needed for the OpenID provider (Node.js 20 or later, e.g. from NodeSource)"
        return 1
    }
    local major
    major=$(node -p 'process.versions.node.split(".")[0]')
    if ((major < 20)); then
        svc_die "Node.js $(node --version) is too old for oidc-provider 9: install Node.js 20 or later"
        return 1
    fi
    local marker=$dir/node_modules/.package-lock.json
    if [[ -f $dir/node_modules/oidc-provider/package.json && $marker -nt $dir/package-lock.json ]]; then
        svc_log "oidc-provider: installed in $dir/node_modules"
        return 0
    fi
    svc_log "oidc-provider: npm ci in $dir"
    (cd "$dir" && npm ci --no-audit --no-fund </dev/null) || {
        svc_die "npm ci in $dir failed"
        return 1
    }
}

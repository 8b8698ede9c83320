# shellcheck shell=bash
# Mayan EDMS for tests/dms_mayan.rs: a real DMS, installed from PyPI into a
# virtualenv and initialised once into a template state folder that each test
# copies (its own SQLite database and media), then runs under gunicorn.
#
# Source after scripts/lib/services.sh. Idempotent: an installed virtualenv and
# a finished template are reused (the `ready` marker carries the version).
#
#   ensure_mayan   # prints nothing; exports PIETURA_TEST_MAYAN_HOME
#
# Layout of $PIETURA_TEST_MAYAN_HOME:
#   venv/                         python3 -m venv with mayan-edms and gunicorn
#   settings/pietura_settings.py  production settings + eager Celery (no worker)
#   template/                     MAYAN_MEDIA_ROOT after common_initial_setup
#   ready                         "<version> r<revision>" once all of the above is complete
#
# The template's admin is `admin` / `pietura-admin` (loopback tests only).

PIETURA_MAYAN_VERSION=${PIETURA_MAYAN_VERSION:-4.12.*}
# Bumped when the template is made differently, so old ones are rebuilt.
PIETURA_MAYAN_TEMPLATE_REVISION=2
PIETURA_MAYAN_PACKAGES=(python3-venv python3-dev libldap2-dev libsasl2-dev poppler-utils)

mayan_env() {
    local media=$1
    env MAYAN_MEDIA_ROOT="$media" \
        PYTHONPATH="$PIETURA_TEST_MAYAN_HOME/settings" \
        DJANGO_SETTINGS_MODULE=pietura_settings \
        MAYAN_REST_API_THROTTLING_ENABLED=false \
        "${@:2}"
}

ensure_mayan() {
    export PIETURA_TEST_MAYAN_HOME=${PIETURA_TEST_MAYAN_HOME:-/var/cache/pietura-test/mayan}
    local home=$PIETURA_TEST_MAYAN_HOME
    local stamp="$PIETURA_MAYAN_VERSION r$PIETURA_MAYAN_TEMPLATE_REVISION"
    if [[ -f $home/ready && $(cat "$home/ready") == "$stamp" ]]; then
        svc_log "mayan: template ready in $home"
        return 0
    fi
    ensure_packages "${PIETURA_MAYAN_PACKAGES[@]}" || return 1
    mkdir -p "$home/settings" "$PIETURA_SERVICES_LOG_DIR"
    local log=$PIETURA_SERVICES_LOG_DIR/mayan-install.log
    # Debian's own python3: the venv must not depend on a user's pyenv.
    if [[ ! -x $home/venv/bin/gunicorn ]]; then
        svc_log "mayan: installing mayan-edms==$PIETURA_MAYAN_VERSION from PyPI (a few minutes; log $log)"
        rm -rf "$home/venv"
        /usr/bin/python3 -m venv "$home/venv" >>"$log" 2>&1 &&
            "$home/venv/bin/pip" install -q --disable-pip-version-check \
                "mayan-edms==$PIETURA_MAYAN_VERSION" gunicorn </dev/null >>"$log" 2>&1 || {
            tail -n 30 "$log" >&2
            svc_die "pip install mayan-edms failed (see $log)"
            return 1
        }
    fi
    cat >"$home/settings/pietura_settings.py" <<'PY'
# Mayan's production settings, with Celery tasks run in the web process:
# the tests run no worker, and uploads must be processed before the answer.
from mayan.settings.production import *  # noqa: F401,F403

CELERY_TASK_ALWAYS_EAGER = True
CELERY_TASK_EAGER_PROPAGATES = False
PY
    local template=$home/template
    rm -rf "$template" "$template.tmp"
    mkdir -p "$template.tmp"
    svc_log "mayan: initialising the template state (about two minutes; log $log)"
    mayan_env "$template.tmp" "$home/venv/bin/mayan-edms.py" common_initial_setup --no-dependencies --force \
        </dev/null >>"$log" 2>&1 || {
        tail -n 30 "$log" >&2
        svc_die "mayan-edms.py common_initial_setup failed (see $log)"
        return 1
    }
    mayan_env "$template.tmp" "$home/venv/bin/mayan-edms.py" shell -c "
from django.contrib.auth import get_user_model
user = get_user_model().objects.get(username='admin')
user.set_password('pietura-admin')
user.save()
" </dev/null >>"$log" 2>&1 || {
        tail -n 30 "$log" >&2
        svc_die "setting the Mayan admin password failed (see $log)"
        return 1
    }
    # config.yml pins every path to this folder; without it Mayan derives
    # them from MAYAN_MEDIA_ROOT, so a copy of the template works anywhere.
    rm -f "$template.tmp/config.yml" "$template.tmp/config_backup.yml"
    mv "$template.tmp" "$template"
    printf '%s' "$stamp" >"$home/ready"
    svc_log "mayan: template ready in $home"
}

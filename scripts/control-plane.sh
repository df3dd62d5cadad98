#!/usr/bin/env bash
# Start/stop a local Kubernetes control plane (etcd + kube-apiserver + kube-controller-manager)
# on 127.0.0.1 for tests. No scheduler, no kubelet: Pods stay Pending.
#
#   scripts/control-plane.sh start DIR   start; writes DIR/admin.kubeconfig, DIR/env.sh, ...
#   scripts/control-plane.sh stop DIR    stop exactly the processes recorded in DIR/pids
#   scripts/control-plane.sh env DIR     print DIR/env.sh (eval "$(scripts/control-plane.sh env DIR)")
#
# Files in DIR: ca.crt ca.key (the cluster CA; tests may sign webhook serving certs with it),
# sa.key sa.pub (service-account signing pair), admin.crt/key (O=system:masters),
# admin.kubeconfig, kcm.kubeconfig, pids, ports, env.sh, logs/*.log, etcd/ (data),
# audit-policy.yaml and logs/audit.log: one JSON line (Metadata level) per request made by a
# ServiceAccount outside kube-system, so tests can see exactly which API calls a component made
# and which were refused (responseStatus.code 403).
#
# A process started with the control plane's DIR in its command line and recorded in DIR/pids
# (`echo "NAME PID" >> DIR/pids`) is stopped with it, first.
#
# Env:
#   K8S_BINS            dir holding etcd, kube-apiserver, kube-controller-manager, kubectl
#                       (default: scripts/k8s-bins.sh, which builds once, then reuses its cache)
#   CP_READY_TIMEOUT    seconds to wait for readiness (default 90)
#   CP_KCM_CONTROLLERS  override kube-controller-manager --controllers
#   CP_OWNER_PID        stop the control plane when this process exits (a detached watcher
#                       checks every second), so a killed test run leaves nothing behind
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
READY_TIMEOUT="${CP_READY_TIMEOUT:-90}"
SERVICE_CIDR=10.0.0.0/24
SERVICE_IP=10.0.0.1
KCM_CONTROLLERS="${CP_KCM_CONTROLLERS:-serviceaccount-token-controller,serviceaccount-controller,namespace-controller,garbage-collector-controller,root-ca-certificate-publisher-controller,deployment-controller,replicaset-controller,statefulset-controller,daemonset-controller,job-controller,cronjob-controller,endpoints-controller,endpointslice-controller,resourcequota-controller,disruption-controller,pod-garbage-collector-controller,ttl-after-finished-controller,clusterrole-aggregation-controller}"
PROXY_VARS=(HTTP_PROXY HTTPS_PROXY http_proxy https_proxy NO_PROXY no_proxy ALL_PROXY all_proxy)

log() { printf '[control-plane] %s\n' "$*" >&2; }
die() { printf '[control-plane] ERROR: %s\n' "$*" >&2; exit 1; }
usage() { echo "usage: $0 start DIR | stop DIR | env DIR" >&2; exit 2; }

now_ms() { date +%s%3N; }

# --- ports --------------------------------------------------------------------------------
# Listening TCP ports (IPv4 + IPv6) in hex, from /proc so no extra tool is needed.
listening_ports() {
  local f
  for f in /proc/net/tcp /proc/net/tcp6; do
    [[ -r "$f" ]] || continue
    # local_address is "ADDR:PORT" in hex; state 0A = LISTEN
    awk 'NR > 1 && $4 == "0A" { split($2, a, ":"); print a[2] }' "$f"
  done
}

declare -A TAKEN=()
# A random free port in 20000-32767: below Linux's default ephemeral range (32768-60999), so
# outgoing connections do not grab it between the check and the bind.
# Sets PORT (no command substitution: TAKEN must persist in this shell).
pick_port() {
  local p i
  if [[ ${#TAKEN[@]} -eq 0 ]]; then
    while read -r p; do TAKEN[$((16#$p))]=1; done < <(listening_ports)
  fi
  for i in $(seq 1 200); do
    p=$((20000 + (RANDOM * 32768 + RANDOM) % 12768))
    if [[ -z "${TAKEN[$p]:-}" ]]; then
      TAKEN[$p]=1
      PORT=$p
      return 0
    fi
  done
  die "no free port found"
}

# --- processes ----------------------------------------------------------------------------
# is_ours PID NAME: the pid is alive and is our binary started for this DIR (guards against reuse).
is_ours() {
  local pid="$1" name="$2" cmd
  [[ -r "/proc/${pid}/cmdline" ]] || return 1
  cmd="$(tr '\0' ' ' < "/proc/${pid}/cmdline" 2>/dev/null)" || return 1
  [[ "${cmd}" == *"/${name} "* && "${cmd}" == *"${DIR}"* ]]
}

stop_dir() {
  local pidfile="${DIR}/pids" name pid i
  [[ -f "${pidfile}" ]] || { log "nothing to stop: ${pidfile} not found"; return 0; }
  # Reverse start order, one at a time (kube-apiserver exits faster while etcd is still up).
  local -a lines=()
  mapfile -t lines < "${pidfile}"
  for ((i = ${#lines[@]} - 1; i >= 0; i--)); do
    read -r name pid <<< "${lines[$i]}"
    [[ -n "${pid:-}" ]] || continue
    is_ours "${pid}" "${name}" || continue
    kill -TERM "${pid}" 2>/dev/null || true
    local deadline=$(( $(date +%s) + 20 ))
    while is_ours "${pid}" "${name}"; do
      if (( $(date +%s) >= deadline )); then
        log "${name} (pid ${pid}) did not exit 20s after SIGTERM; sending SIGKILL"
        kill -KILL "${pid}" 2>/dev/null || true
        sleep 0.2
      else
        sleep 0.1
      fi
    done
    # A child of this shell (stop after a failed start): reap it.
    wait "${pid}" 2>/dev/null || true
  done
  rm -f "${pidfile}"
  log "stopped (${DIR})"
}

# launch NAME ARGS...: start a binary with the proxy variables unset, record its pid.
launch() {
  local name="$1"; shift
  local -a unset_args=()
  local v
  for v in "${PROXY_VARS[@]}"; do unset_args+=(-u "$v"); done
  env "${unset_args[@]}" "${K8S_BINS}/${name}" "$@" \
    </dev/null >>"${DIR}/logs/${name}.log" 2>&1 &
  echo "${name} $!" >> "${DIR}/pids"
  eval "PID_${name//-/_}=$!"
}

alive() { local v="PID_${1//-/_}"; kill -0 "${!v}" 2>/dev/null; }

fail_start() {
  local msg="$1" name="${2:-kube-apiserver}"
  log "${msg}"
  local f="${DIR}/logs/${name}.log"
  if [[ -f "$f" ]]; then
    log "--- last 40 lines of ${f} ---"
    tail -n 40 "$f" >&2
  fi
  stop_dir || true
  return 1
}

addr_in_use() { grep -qs 'address already in use' "${DIR}"/logs/*.log; }

# --- certificates -------------------------------------------------------------------------
make_certs() {
  local d="$1"
  (
    cd "$d"
    umask 077
    openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 30 \
      -subj "/CN=mcp-warden-test-ca" \
      -addext "basicConstraints=critical,CA:TRUE" \
      -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" 2>/dev/null
    sign() { # NAME SUBJECT EXTENSIONS
      openssl req -new -newkey rsa:2048 -nodes -keyout "$1.key" -subj "$2" 2>/dev/null \
        | openssl x509 -req -CA ca.crt -CAkey ca.key -CAcreateserial -days 30 -out "$1.crt" \
          -extfile <(printf 'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n%b' "$3") 2>/dev/null
    }
    sign apiserver "/CN=kube-apiserver" \
      "extendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,IP:${SERVICE_IP}\n"
    sign admin "/O=system:masters/CN=admin" "extendedKeyUsage=clientAuth\n"
    sign kcm "/CN=system:kube-controller-manager" "extendedKeyUsage=clientAuth\n"
    openssl genrsa -out sa.key 2048 2>/dev/null
    openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
    rm -f ca.srl
    chmod 0644 ca.crt apiserver.crt admin.crt kcm.crt sa.pub
  )
}

# The audit policy: ServiceAccounts' requests (not kube-system's controllers), metadata only.
write_audit_policy() {
  cat > "$1/audit-policy.yaml" <<'EOF'
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
  - level: None
    userGroups: ["system:serviceaccounts:kube-system"]
  - level: Metadata
    userGroups: ["system:serviceaccounts"]
  - level: None
EOF
}

# write_kubeconfig FILE SERVER USER CERT KEY
write_kubeconfig() {
  local b64="base64 -w0"
  umask 077
  cat > "$1" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: local
  cluster:
    server: $2
    certificate-authority-data: $(${b64} < "${DIR}/ca.crt")
users:
- name: $3
  user:
    client-certificate-data: $(${b64} < "$4")
    client-key-data: $(${b64} < "$5")
contexts:
- name: $3@local
  context:
    cluster: local
    user: $3
current-context: $3@local
EOF
}

# --- start --------------------------------------------------------------------------------
start_once() {
  local etcd_client etcd_peer api_port kcm_port url
  pick_port; etcd_client=${PORT}
  pick_port; etcd_peer=${PORT}
  pick_port; api_port=${PORT}
  pick_port; kcm_port=${PORT}
  url="https://127.0.0.1:${api_port}"
  printf 'etcd_client=%s\netcd_peer=%s\napiserver=%s\nkube_controller_manager=%s\n' \
    "${etcd_client}" "${etcd_peer}" "${api_port}" "${kcm_port}" > "${DIR}/ports"
  rm -rf "${DIR}/etcd" "${DIR}/logs" "${DIR}/kcm-certs" "${DIR}/apiserver-certs"
  mkdir -p "${DIR}/logs" "${DIR}/kcm-certs" "${DIR}/apiserver-certs"
  : > "${DIR}/pids"

  launch etcd --name=default --data-dir="${DIR}/etcd" \
    --listen-client-urls="http://127.0.0.1:${etcd_client}" \
    --advertise-client-urls="http://127.0.0.1:${etcd_client}" \
    --listen-peer-urls="http://127.0.0.1:${etcd_peer}" \
    --initial-advertise-peer-urls="http://127.0.0.1:${etcd_peer}" \
    --initial-cluster="default=http://127.0.0.1:${etcd_peer}" \
    --unsafe-no-fsync --log-level=warn

  launch kube-apiserver \
    --etcd-servers="http://127.0.0.1:${etcd_client}" \
    --bind-address=127.0.0.1 --advertise-address=127.0.0.1 --secure-port="${api_port}" \
    --cert-dir="${DIR}/apiserver-certs" \
    --tls-cert-file="${DIR}/apiserver.crt" --tls-private-key-file="${DIR}/apiserver.key" \
    --client-ca-file="${DIR}/ca.crt" \
    --authorization-mode=RBAC \
    --service-account-issuer=https://kubernetes.default.svc \
    --service-account-key-file="${DIR}/sa.pub" \
    --service-account-signing-key-file="${DIR}/sa.key" \
    --service-cluster-ip-range="${SERVICE_CIDR}" \
    --allow-privileged=true \
    --endpoint-reconciler-type=none \
    --audit-policy-file="${DIR}/audit-policy.yaml" \
    --audit-log-path="${DIR}/logs/audit.log" --audit-log-format=json --audit-log-maxbackup=1

  # Wait for /readyz.
  local deadline=$(( $(date +%s) + READY_TIMEOUT ))
  until curl -fsS --max-time 2 --noproxy '*' --cacert "${DIR}/ca.crt" \
      --cert "${DIR}/admin.crt" --key "${DIR}/admin.key" "${url}/readyz" >/dev/null 2>&1; do
    if addr_in_use; then stop_dir >/dev/null 2>&1 || true; return 75; fi
    alive etcd || { fail_start "etcd exited during start" etcd; return 1; }
    alive kube-apiserver || { fail_start "kube-apiserver exited during start"; return 1; }
    (( $(date +%s) < deadline )) || {
      fail_start "kube-apiserver not ready at ${url}/readyz after ${READY_TIMEOUT}s"; return 1; }
    sleep 0.5
  done
  log "kube-apiserver ready at ${url} ($(( $(now_ms) - T0 )) ms)"

  write_kubeconfig "${DIR}/admin.kubeconfig" "${url}" admin "${DIR}/admin.crt" "${DIR}/admin.key"
  write_kubeconfig "${DIR}/kcm.kubeconfig" "${url}" kube-controller-manager "${DIR}/kcm.crt" "${DIR}/kcm.key"

  launch kube-controller-manager \
    --kubeconfig="${DIR}/kcm.kubeconfig" \
    --authentication-kubeconfig="${DIR}/kcm.kubeconfig" \
    --authorization-kubeconfig="${DIR}/kcm.kubeconfig" \
    --bind-address=127.0.0.1 --secure-port="${kcm_port}" --cert-dir="${DIR}/kcm-certs" \
    --leader-elect=false \
    --use-service-account-credentials=true \
    --service-account-private-key-file="${DIR}/sa.key" \
    --root-ca-file="${DIR}/ca.crt" \
    --service-cluster-ip-range="${SERVICE_CIDR}" \
    --controllers="${KCM_CONTROLLERS}"

  # KCM is up once it serves /healthz and the token + serviceaccount controllers have made
  # the default ServiceAccount.
  until curl -fsk --max-time 2 --noproxy '*' "https://127.0.0.1:${kcm_port}/healthz" >/dev/null 2>&1 \
      && "${K8S_BINS}/kubectl" --kubeconfig="${DIR}/admin.kubeconfig" --request-timeout=2s \
        -n default get serviceaccount default >/dev/null 2>&1; do
    if addr_in_use; then stop_dir >/dev/null 2>&1 || true; return 75; fi
    alive kube-controller-manager || {
      fail_start "kube-controller-manager exited during start" kube-controller-manager; return 1; }
    alive kube-apiserver || { fail_start "kube-apiserver exited during start"; return 1; }
    (( $(date +%s) < deadline )) || {
      fail_start "kube-controller-manager not ready (no default ServiceAccount) after ${READY_TIMEOUT}s" \
        kube-controller-manager; return 1; }
    sleep 0.5
  done

  umask 022
  cat > "${DIR}/env.sh" <<EOF
# generated by scripts/control-plane.sh start; source it
export CONTROL_PLANE_DIR='${DIR}'
export K8S_BINS='${K8S_BINS}'
export KUBEBUILDER_ASSETS='${K8S_BINS}'
export KUBECONFIG='${DIR}/admin.kubeconfig'
export KUBE_APISERVER_URL='${url}'
export KUBE_APISERVER_PORT='${api_port}'
export KUBE_CA_CERT='${DIR}/ca.crt'
export KUBE_CA_KEY='${DIR}/ca.key'
export KUBE_SA_KEY='${DIR}/sa.key'
export KUBE_SA_ISSUER='https://kubernetes.default.svc'
export KUBE_SERVICE_CIDR='${SERVICE_CIDR}'
export KUBE_AUDIT_LOG='${DIR}/logs/audit.log'
export ETCD_ENDPOINT='http://127.0.0.1:${etcd_client}'
export PATH='${K8S_BINS}':"\${PATH}"
EOF
}

start() {
  command -v openssl >/dev/null || die "openssl not found"
  command -v curl >/dev/null || die "curl not found"
  if [[ -z "${K8S_BINS:-}" ]]; then
    K8S_BINS="$("${SCRIPT_DIR}/k8s-bins.sh" | tail -n1)"
  fi
  local b
  for b in etcd kube-apiserver kube-controller-manager kubectl; do
    [[ -x "${K8S_BINS}/${b}" ]] || die "${K8S_BINS}/${b} missing: run scripts/k8s-bins.sh or set K8S_BINS"
  done
  mkdir -p "${DIR}"
  DIR="$(cd "${DIR}" && pwd)"
  if [[ -f "${DIR}/pids" ]]; then
    local name pid
    while read -r name pid; do
      [[ -n "${pid:-}" ]] && is_ours "${pid}" "${name}" && \
        die "a control plane is already running in ${DIR} (${name} pid ${pid}); stop it first"
    done < "${DIR}/pids"
    rm -f "${DIR}/pids"
  fi
  rm -f "${DIR}/env.sh"

  T0=$(now_ms)
  make_certs "${DIR}"
  write_audit_policy "${DIR}"
  local attempt rc
  for attempt in 1 2 3; do
    # A subshell with errexit in force (a `start_once || ...` would switch errexit off inside).
    set +e
    (set -e; start_once)
    rc=$?
    set -e
    [[ ${rc} -eq 0 ]] && break
    [[ ${rc} -eq 75 ]] || exit 1
    log "port collision (attempt ${attempt}); retrying with new ports"
  done
  [[ ${rc} -eq 0 ]] || die "could not find free ports after 3 attempts"
  if [[ -n "${CP_OWNER_PID:-}" ]]; then
    # Detached (own session, no inherited stdio): outlives this script, not the owner.
    # shellcheck disable=SC2016 # $1.. are the inner script's arguments
    setsid bash -c 'while kill -0 "$1" 2>/dev/null && [[ -f "$2/pids" ]]; do sleep 1; done
      [[ -f "$2/pids" ]] && exec "$3" stop "$2"' reaper "${CP_OWNER_PID}" "${DIR}" \
      "${SCRIPT_DIR}/control-plane.sh" </dev/null >>"${DIR}/logs/reaper.log" 2>&1 &
    log "stops by itself when pid ${CP_OWNER_PID} exits"
  fi
  log "control plane ready in $(( $(now_ms) - T0 )) ms: source ${DIR}/env.sh"
}

cmd="${1:-}"; DIR="${2:-}"
[[ -n "${cmd}" && -n "${DIR}" ]] || usage
case "${cmd}" in
  start) start ;;
  stop)
    [[ -d "${DIR}" ]] || die "no such directory: ${DIR}"
    DIR="$(cd "${DIR}" && pwd)"
    stop_dir ;;
  env)
    [[ -f "${DIR}/env.sh" ]] || die "${DIR}/env.sh not found: is the control plane started?"
    cat "${DIR}/env.sh" ;;
  *) usage ;;
esac

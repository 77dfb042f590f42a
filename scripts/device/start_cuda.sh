# Sourced by gpu_check.sh and gpu_benchmark.sh (needs $PY and $NVIDIA): start_cuda MODEL_DIR starts a
# strict CUDA Embedder through vggsim's own library preload and, when that fails, once more with
# LD_LIBRARY_PATH set to the nvidia wheels' library folders (exported for the rest of the script).
start_cuda() {
  local probe="import vggsim, json; e = vggsim.Embedder('$1', providers='cuda', strict=True); print(e.provider, json.dumps(e.session.get_provider_options()['CUDAExecutionProvider']))"
  if ! $PY -W ignore -c "$probe"; then
    echo "preload did not start CUDA; falling back to LD_LIBRARY_PATH"
    export LD_LIBRARY_PATH=$(find "$NVIDIA" -name 'lib*.so*' -printf '%h\n' | sort -u | paste -sd:)${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
    $PY -W ignore -c "$probe" || return 1
  fi
}

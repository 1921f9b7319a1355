"""What runs offline, outside Lambda: the `avsev` CLI and its command groups, training and
compiling (`pipeline`), the local stack (`local`), the cost model (`cost`), deployment checks.
It imports the library the functions run (`avsev`, in the common layer's tree); the library
never imports it."""

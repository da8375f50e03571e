// Cooperative cancellation on SIGINT/SIGTERM. A signal handler can only set a flag, so this is the
// one process-wide state in ckptkit: the pipeline polls it between tensors and unwinds with
// ErrorKind::Interrupted, letting RAII remove temporary outputs.
#pragma once

namespace ckpt {

/// Installs SIGINT/SIGTERM handlers that request a stop (called once by the CLI's main).
void install_interrupt_handlers();
/// True once a stop was requested.
bool interrupt_requested();
/// Throws Error(Interrupted) when a stop was requested.
void throw_if_interrupted();
/// The signal number that requested the stop, or 0.
int interrupt_signal();

}  // namespace ckpt

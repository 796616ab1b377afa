//go:build unix

package command

import (
	"os/exec"
	"syscall"
)

// killGroup runs cmd in its own process group and kills the whole group when
// the command is canceled, so that a timeout stops what it started too and
// its pipes close.
func killGroup(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
}

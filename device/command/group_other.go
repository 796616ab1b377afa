//go:build !unix

package command

import "os/exec"

// killGroup leaves cmd as it is: without process groups, cancelation kills
// the command alone (WaitDelay then closes its pipes).
func killGroup(*exec.Cmd) {}

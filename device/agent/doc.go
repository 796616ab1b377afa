// Package agent is the device's FOTA logic as a pure state machine: it takes
// events (the device booted, MQTT connected, a Jobs message arrived, the
// download progressed, the image verified, the self-test passed, a tick of
// the clock) and returns a Ready value listing the actions the caller must
// perform, in order — persist the state, publish a Jobs request, start or stop
// the download, verify, schedule the swap, reboot, run the self-test, confirm,
// tell the application — plus the time at which it wants to be woken.
//
// Like etcd's raft, it does no I/O and reads no clock: time arrives inside
// events, randomness through Config. Every edge case — a duplicate
// notify-next, a reboot between two steps, a cancel during verify, a
// VersionMismatch, a lost report — is therefore a deterministic table or
// transcript test. device/runner performs the actions.
//
// The rules it enforces, beyond the seed library it replaces:
//
//   - SUCCEEDED is reported only after the new image booted, passed the
//     application's self-test and was confirmed; any other outcome is FAILED
//     with statusDetails.reason from the Reason constants. REJECTED is sent
//     only from QUEUED.
//   - Progress and phase are persisted (Persist actions come before the
//     actions that depend on them), so any restart resumes where it was.
//   - Exactly one Jobs request is outstanding at a time; every report carries
//     expectedVersion; a VersionMismatch or a lost reply is resolved by
//     re-reading the execution, never by dropping the report.
//   - A job that stops being the thing's next job (canceled, removed, timed
//     out, deleted) is confirmed by re-reading it, then abandoned: the
//     download stops, the slot is reset, the application is told, and no
//     report is sent for it again.
//
// It imports only the standard library, iotjobs and jobdoc.
package agent

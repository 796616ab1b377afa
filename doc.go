// Package awsfota updates device firmware over the air through AWS IoT Jobs
// (MQTT over mutual TLS) and HTTP(S) downloads, and carries a local cloud that
// behaves like the parts of AWS a FOTA user touches.
//
// The module has three parts on one lot, every import pointing down:
//
//   - format packages shared by all: iotjobs (the Jobs wire protocol), jobdoc
//     (job documents), mcuboot (the image format) and clock (time as an input);
//   - the device library under device/: the pure FOTA state machine
//     (device/agent), the runner that performs its actions (device/runner),
//     and the pieces it drives — MQTT (device/mqttconn), the resumable
//     downloader (device/download), DFU targets (device/dfu), flash
//     (device/flash) and persisted state (device/state);
//   - the local cloud under cloud/: CA, registry, Jobs service, MQTT broker,
//     S3-compatible object store, wired together by cloud/emu.
//
// sim/ simulates devices on top of both; internal/cli is the awsfota command.
// The tests in this package enforce those rules (deps_test.go) and that every
// package says what it is for (doc_test.go). This package holds no code.
//
// It imports nothing.
package awsfota

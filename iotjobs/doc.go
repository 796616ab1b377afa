// Package iotjobs is the AWS IoT Jobs device wire protocol: the MQTT topics a
// device and the Jobs service exchange, the JSON request, response and
// notification messages, execution statuses and rejection codes.
//
// Both sides of the protocol use it — the device agent to build requests and
// read replies, and the local cloud's Jobs service to route requests and write
// replies — so the two cannot drift apart. The facts follow the AWS IoT
// developer guide and the iot-jobs-data service model (see
// reference/aws-iot-jobs.md in the shared design documents).
//
// It imports only the standard library: no device, cloud or sim package.
package iotjobs

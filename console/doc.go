// Package console is awsfota's web console: an operator watches and steers
// rollouts in a browser — the fleet and the firmware each device runs, the
// jobs with their counts, a job's executions with live download bars,
// cancel and delete, publishing an image, a device's history — against the
// local cloud or AWS alike, over the same operator layer as the CLI.
//
// Pages are server-rendered with html/template and work without JavaScript;
// a little plain JavaScript (embedded, no build step, no CDN) makes them
// live: each page is also a Server-Sent Events stream of its changed parts,
// re-rendered by the same templates. Changes come from a ChangeFeed (the
// local cloud's Jobs service's own change stream) when there is one, and
// from polling with back-off otherwise (AWS).
//
// Security: the console answers loopback names only unless a token is set
// (every request then proves it, by cookie or header), every state change
// carries a CSRF token bound to the browser's session and is refused
// cross-origin, every response has a strict Content-Security-Policy (no
// inline script or style), and everything devices control (statusDetails)
// is escaped by html/template or set as text by the script.
//
// It imports the standard library, clock, jobdoc and operator (and through
// it the AWS SDK); it must never import cloud/*, device/* or sim/: the local
// cloud's feed and presence are handed to it through the ChangeFeed and
// Presence interfaces.
package console

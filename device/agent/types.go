package agent

import (
	"time"

	"github.com/awsfota/awsfota/iotjobs"
)

// Reason values of statusDetails.reason on a FAILED or REJECTED execution.
const (
	ReasonInvalidDocument      = "invalid_document"      // the job document is malformed or incomplete
	ReasonLimitExceeded        = "limit_exceeded"        // host, path or document longer than the device allows
	ReasonUnsupportedOperation = "unsupported_operation" // not a firmware job and no custom handler
	ReasonTooLarge             = "too_large"             // the image does not fit the target
	ReasonDownloadFailed       = "download_failed"       // the image could not be fetched within the retry budget
	ReasonHashMismatch         = "hash_mismatch"         // size or SHA-256 differ from the document or the image's own hash
	ReasonInvalidImage         = "invalid_image"         // not an image this device can install
	ReasonVersionMismatch      = "version_mismatch"      // the image's version is not the document's fwversion
	ReasonDowngrade            = "downgrade"             // not newer than the running image (version or security counter) and downgrades are not allowed
	ReasonBadSignature         = "bad_signature"         // signed, but not by a trusted key, or the signature does not verify
	ReasonUnsigned             = "unsigned"              // the device trusts keys and the image carries no signature
	ReasonFlashError           = "flash_error"           // writing, scheduling or confirming failed on the device
	ReasonRollback             = "rollback"              // after the reboot the old image runs: the bootloader refused or reverted the new one before its self-test started
	ReasonTrialReset           = "trial_reset"           // every attempt of the new image's trial was cut short by a reset (power loss, watchdog) and reverted
	ReasonBaseMismatch         = "base_mismatch"         // the job's delta applies to another image than the one running (checked before downloading)
	ReasonModemUpdateFailed    = "modem_update_failed"   // after its restart the modem does not run the expected firmware
	ReasonSelfTestFailed       = "self_test_failed"      // the new image booted but its self-test failed or timed out
	ReasonCustomFailed         = "custom_job_failed"     // the application's handler failed the custom job
	ReasonIncompatible         = "incompatible"          // the image is for another system (RAUC compatible) than this device's
	ReasonInstallFailed        = "install_failed"        // the device's installer (RAUC, an install command) refused or failed the image
)

// Boot describes the image running after a (re)start.
type Boot struct {
	Version         string
	BootHash        []byte
	Confirmed       bool
	SecurityCounter *uint32 // nil when the running image has none
	// Components gives the running firmware version of each other updatable
	// part ("modem"), "" when it cannot be read.
	Components map[string]string
	// AppComponent is the name jobs give the application when this device
	// installs it with a system updater ("rauc"): a job for that component
	// updates the application. "" when only "app" jobs do.
	AppComponent string
	// Compatible is the system this device is (RAUC's compatible string), ""
	// when unknown: a job whose document names another is FAILED before
	// anything is fetched.
	Compatible string
}

// Event is an input to Step. Every event carries the time it happened.
type Event interface{ at() time.Time }

// Base carries the time of an event.
type Base struct{ At time.Time }

func (b Base) at() time.Time { return b.At }

// Started is the first event after every (re)start: what runs, and a nonce
// unique to this boot that makes client tokens unique.
type Started struct {
	Base
	Boot  Boot
	Nonce string
}

// Connected: MQTT is up and subscribed to the thing's Jobs topics.
type Connected struct{ Base }

// Disconnected: MQTT is down; requests in flight are lost.
type Disconnected struct{ Base }

// Message is a Jobs message received on an MQTT topic.
type Message struct {
	Base
	Topic   string
	Payload []byte
}

// DownloadProgress: Received bytes are in the target, of which Durable are
// checkpointed (a resume may start there).
type DownloadProgress struct {
	Base
	Received, Durable, Total int64
	ETag                     string
}

// DownloadFailure classifies why a download stopped.
type DownloadFailure int

// Download failures.
const (
	FailNetwork      DownloadFailure = iota + 1 // retry budget spent
	FailURLRejected                             // 400/403: the URL may have expired
	FailNotFound                                // 404/410
	FailTooLarge                                // the target refused the size
	FailTarget                                  // writing to the target failed
	FailBaseMismatch                            // a delta's base is not the running image
	FailUnsupported                             // the device cannot install this image or component
	FailInvalidImage                            // the file is not an image at all
)

// DownloadFailed: the download stopped for good.
type DownloadFailed struct {
	Base
	Failure DownloadFailure
	Message string
}

// DownloadDone: the whole image is in the target.
type DownloadDone struct {
	Base
	Total int64
	ETag  string
	// Kind is the image type the target took it as ("mcuboot", "delta",
	// "modem-full", ...), "" if unknown. Only a full application image
	// (mcuboot) is re-checked in place after a restart; others are fetched
	// again.
	Kind string
}

// VerifyFailure classifies a refused image.
type VerifyFailure int

// Verify failures.
const (
	VerifyHashMismatch VerifyFailure = iota + 1 // the image's own hash is wrong
	VerifyInvalid                               // not an image the target can install
	VerifyIO                                    // the target could not be read
	VerifyBadSignature                          // signed, but not by a trusted key
	VerifyUnsigned                              // no signature, and keys are trusted
	VerifyIncompatible                          // built for another system than this device's
	VerifyInstallError                          // the device's installer refused or failed the image
)

// Verified reports the target's check of the complete image.
type Verified struct {
	Base
	Image   Image
	Failure VerifyFailure // 0 when the image is good
	Message string
}

// InstallProgress reports an installer at work on the complete image while
// it is verified (RAUC installing a bundle into the other slot): Percent
// done, and what it does.
type InstallProgress struct {
	Base
	Percent int
	Message string
}

// Scheduled reports the Schedule action; Err is "" on success.
type Scheduled struct {
	Base
	Err string
}

// SelfTested reports the application's self-test; Err is "" when it passed.
type SelfTested struct {
	Base
	Err string
}

// Confirmed reports the Confirm action; Err is "" on success.
type Confirmed struct {
	Base
	Err string
}

// CustomDone reports the application's handling of a custom job.
type CustomDone struct {
	Base
	JobID   string
	Status  iotjobs.Status
	Details iotjobs.StatusDetails
}

// Tick wakes the agent at or after the time Ready.WakeAt asked for.
type Tick struct{ Base }

// Action is an output of Step, to be performed in order.
type Action interface{ action() }

// Persist: save State durably before performing the actions after it.
type Persist struct{ State State }

// Publish a Jobs request (QoS 1).
type Publish struct {
	Topic   string
	Payload []byte
}

// StartDownload fetches URL into the target of Component ("" is the
// application) from Offset (0 starts over, and the target is
// re-initialised). Size is the expected total, 0 if unknown. When BaseSHA256
// is set the image is a delta for that running image: check it before
// fetching anything.
type StartDownload struct {
	URL        string
	Offset     int64
	Size       int64
	ETag       string
	Component  string
	BaseSHA256 []byte
	BaseSize   int64
}

// StopDownload aborts a running download; no event follows.
type StopDownload struct{}

// Verify checks the complete image in the target of Component, which holds
// Size bytes; Resume means the target must first be re-opened on them (after
// a restart).
type Verify struct {
	Size      int64
	Resume    bool
	Component string
}

// Schedule asks the bootloader (or the component) to install the image at
// the next reboot.
type Schedule struct {
	Permanent bool
	Component string
}

// ResetTarget discards whatever the target of Component holds; no event
// follows.
type ResetTarget struct{ Component string }

// Reboot restarts the device; nothing after it runs.
type Reboot struct{}

// SelfTest runs the application's self-test within Timeout.
type SelfTest struct{ Timeout time.Duration }

// Confirm marks the running image good so the bootloader keeps it.
type Confirm struct{}

// RunCustom hands a custom job to the application.
type RunCustom struct {
	JobID    string
	Document []byte
}

// Notify tells the application something happened.
type Notify struct{ Event AppEvent }

func (Persist) action()       {}
func (Publish) action()       {}
func (StartDownload) action() {}
func (StopDownload) action()  {}
func (Verify) action()        {}
func (Schedule) action()      {}
func (ResetTarget) action()   {}
func (Reboot) action()        {}
func (SelfTest) action()      {}
func (Confirm) action()       {}
func (RunCustom) action()     {}
func (Notify) action()        {}

// AppEventKind names an application event; the set mirrors the seed's.
type AppEventKind string

// Application events.
const (
	EventStart        AppEventKind = "start"         // a job was accepted and the download begins
	EventProgress     AppEventKind = "progress"      // Percent and Bytes of Total are in
	EventInstalling   AppEventKind = "installing"    // the installer is Percent done, doing Message
	EventErasePending AppEventKind = "erase_pending" // a target erases a large area: keep the link quiet
	EventEraseDone    AppEventKind = "erase_done"
	EventDone         AppEventKind = "done"      // the image is installed on reboot; RebootRequired says whether to reboot
	EventError        AppEventKind = "error"     // the job failed: Reason and Message say why
	EventRetry        AppEventKind = "retry"     // a reset cut the new image's trial short: it is installed again (Message says why, and which attempt)
	EventCanceled     AppEventKind = "canceled"  // the cloud canceled, removed or timed out the job
	EventCompleted    AppEventKind = "completed" // the cloud accepted the job's terminal status (Status)
)

// AppEvent is what the application hears about a job.
type AppEvent struct {
	Kind           AppEventKind
	JobID          string
	Percent        int
	Bytes, Total   int64
	ImageType      string
	Version        string
	RebootRequired bool
	Reason         string
	Message        string
	Status         iotjobs.Status
}

// Ready is the output of Step.
type Ready struct {
	Actions []Action
	// WakeAt, when not zero, is when the agent wants a Tick.
	WakeAt time.Time
}

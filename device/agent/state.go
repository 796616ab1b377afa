package agent

import (
	"encoding/json"
	"fmt"

	"github.com/awsfota/awsfota/iotjobs"
	"github.com/awsfota/awsfota/jobdoc"
)

// Phase is where the agent is in an update. It is persisted.
type Phase string

// Phases, in the order an update goes through them.
const (
	PhaseIdle        Phase = "idle"            // no job
	PhaseStarting    Phase = "starting"        // IN_PROGRESS sent, waiting for the cloud to accept it
	PhaseDownloading Phase = "downloading"     // fetching the image into the target
	PhaseVerifying   Phase = "verifying"       // checking the complete image
	PhaseReady       Phase = "ready_to_reboot" // verified; telling the cloud before scheduling
	PhaseRebooting   Phase = "rebooting"       // swap scheduled, reboot requested
	PhaseTesting     Phase = "testing"         // the new image runs: self-test, then confirm
	PhaseReporting   Phase = "reporting"       // the outcome is decided and being reported
	PhaseCustom      Phase = "custom"          // a custom job is with the application
)

// Job is the execution the agent works on.
type Job struct {
	ID              string          `json:"id"`
	ExecutionNumber int64           `json:"executionNumber"`
	VersionNumber   int64           `json:"versionNumber"` // latest known on the cloud
	Document        json.RawMessage `json:"document"`
	Kind            jobdoc.Kind     `json:"kind"`
	URL             string          `json:"url,omitempty"`
	Size            int64           `json:"size,omitempty"`
	SHA256          []byte          `json:"sha256,omitempty"`
	FWVersion       string          `json:"fwversion,omitempty"`
	// Component is "" for the application, or the part it updates ("modem").
	Component string `json:"component,omitempty"`
	// BaseSHA256 and BaseSize identify the running image a delta needs.
	BaseSHA256 []byte `json:"baseSha256,omitempty"`
	BaseSize   int64  `json:"baseSize,omitempty"`
	// StepTimeout (minutes) is sent with IN_PROGRESS reports when set.
	StepTimeout int64 `json:"stepTimeout,omitempty"`
}

// Image describes the verified image in the target.
type Image struct {
	Type     string `json:"type"`
	Size     int64  `json:"size"`
	SHA256   []byte `json:"sha256"`
	BootHash []byte `json:"bootHash"`
	Version  string `json:"version"`
	// SecurityCounter is the image's anti-rollback counter, nil if none.
	SecurityCounter *uint32 `json:"securityCounter,omitempty"`
}

// Outcome is the terminal status the agent reports.
type Outcome struct {
	Status  iotjobs.Status        `json:"status"`
	Details iotjobs.StatusDetails `json:"details"`
	// Reboot asks for a reboot once the report is accepted (to revert an
	// image that failed its self-test).
	Reboot bool `json:"reboot,omitempty"`
}

// State is what the agent persists. The zero value is an idle agent.
type State struct {
	Phase Phase `json:"phase"`
	Job   *Job  `json:"job,omitempty"`
	// Offset is the last durable download offset; ETag and Total identify
	// the object it belongs to.
	Offset int64  `json:"offset,omitempty"`
	ETag   string `json:"etag,omitempty"`
	Total  int64  `json:"total,omitempty"`
	// Kind is the type of the downloaded image, once complete.
	Kind string `json:"kind,omitempty"`
	// Image is set once the image verified.
	Image *Image `json:"image,omitempty"`
	// FromVersion is the version that ran when the job started.
	FromVersion string `json:"fromVersion,omitempty"`
	// Outcome is set in PhaseReporting.
	Outcome *Outcome `json:"outcome,omitempty"`
	// Refreshes counts URL refreshes since the download last progressed.
	Refreshes int `json:"refreshes,omitempty"`

	// Attempts counts the reboots into the job's image, the current one
	// included: it is persisted before each (PhaseRebooting).
	Attempts int `json:"attempts,omitempty"`
	// Trial marks how far the new image's last trial went, so that a device
	// back on its old image can tell a reset during the trial (power loss,
	// watchdog) from a refusal by the bootloader: "" until the new image is
	// seen running, TrialSelfTest once its self-test started, TrialPassed
	// once it passed (persisted before the image is confirmed). A failed
	// self-test is an Outcome instead.
	Trial string `json:"trial,omitempty"`
	// Interrupted says how the last trial ended without a verdict, for the
	// reports of the next attempt; "" if none did.
	Interrupted string `json:"interrupted,omitempty"`
	// Recheck is set while the image left in the slot by a reverted trial is
	// verified again, before it is installed once more.
	Recheck bool `json:"recheck,omitempty"`
	// Canceled is set when the cloud ended the job while its image was on
	// trial: the trial ends as Config.CancelDuringTrial says, and nothing
	// more is reported.
	Canceled string `json:"canceled,omitempty"`
}

// Trial markers.
const (
	TrialSelfTest = "self_test" // the new image runs and its self-test started
	TrialPassed   = "passed"    // the self-test passed; confirming
)

// Marshal encodes the state for a Store.
func (s State) Marshal() []byte {
	b, err := json.Marshal(s)
	if err != nil {
		panic(fmt.Sprintf("agent: encoding state: %v", err)) // plain data: cannot fail
	}
	return b
}

// UnmarshalState decodes a persisted state and checks that it is coherent.
func UnmarshalState(b []byte) (State, error) {
	var s State
	if err := json.Unmarshal(b, &s); err != nil {
		return State{}, fmt.Errorf("agent: persisted state does not decode: %w", err)
	}
	switch s.Phase {
	case PhaseIdle:
		if s.Job != nil {
			return State{}, fmt.Errorf("agent: persisted state is idle but names job %q", s.Job.ID)
		}
		return s, nil
	case PhaseStarting, PhaseDownloading, PhaseVerifying, PhaseReady, PhaseRebooting, PhaseTesting, PhaseReporting, PhaseCustom:
	case "":
		s.Phase = PhaseIdle
		return s, nil
	default:
		return State{}, fmt.Errorf("agent: persisted state has unknown phase %q", s.Phase)
	}
	if s.Job == nil || s.Job.ID == "" {
		return State{}, fmt.Errorf("agent: persisted phase %q has no job", s.Phase)
	}
	if s.Phase == PhaseReporting && s.Outcome == nil {
		return State{}, fmt.Errorf("agent: persisted phase %q has no outcome", s.Phase)
	}
	if (s.Phase == PhaseReady || s.Phase == PhaseRebooting || s.Phase == PhaseTesting) && s.Image == nil {
		return State{}, fmt.Errorf("agent: persisted phase %q has no verified image", s.Phase)
	}
	switch s.Trial {
	case "", TrialSelfTest, TrialPassed:
	default:
		return State{}, fmt.Errorf("agent: persisted trial marker %q is unknown", s.Trial)
	}
	if s.Canceled != "" && s.Phase != PhaseTesting {
		return State{}, fmt.Errorf("agent: persisted phase %q is marked canceled; only a trial can be", s.Phase)
	}
	return s, nil
}

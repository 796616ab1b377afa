package jobsvc

import (
	"math"
	"time"
)

// MaxRolloutPerMinute is AWS's ceiling on a rollout rate.
const MaxRolloutPerMinute = 1000

// rolloutState is how far a job's rollout has got. Executions are released
// (created, and so notified) in one-minute windows counted from the job's
// creation; each window allows the rate current when it opened.
type rolloutState struct {
	// Released is how many executions the rollout has created.
	Released int64 `json:"released"`
	// Rate is the current rate per minute (fractional while an exponential
	// rate grows; the allowance of a window is its whole part, at least 1).
	Rate float64 `json:"rate,omitempty"`
	// WindowStart opens the current window; InWindow executions were
	// released in it, out of WindowLimit.
	WindowStart time.Time `json:"windowStart,omitzero"`
	InWindow    int64     `json:"inWindow,omitempty"`
	WindowLimit int64     `json:"windowLimit,omitempty"`
	// NotifiedMark and SucceededMark are the counts at which the rate last
	// increased.
	NotifiedMark  int64 `json:"notifiedMark,omitempty"`
	SucceededMark int64 `json:"succeededMark,omitempty"`
}

func (c *RolloutConfig) initialRate() float64 {
	switch {
	case c.ExponentialRate != nil:
		return float64(c.ExponentialRate.BaseRatePerMinute)
	default:
		return float64(c.MaximumPerMinute)
	}
}

// allowance is how many executions one window may release at rate: its
// whole part (at least 1), capped by maximumPerMinute when both it and an
// exponential rate are given (unconfirmed on AWS) and by AWS's 1000.
func (c *RolloutConfig) allowance(rate float64) int64 {
	n := max(int64(math.Floor(rate)), 1)
	if c.ExponentialRate != nil && c.MaximumPerMinute > 0 {
		n = min(n, c.MaximumPerMinute)
	}
	return min(n, MaxRolloutPerMinute)
}

// grow applies an exponential rate's increase criteria: one increase by
// incrementFactor for every numberOfNotifiedThings released (or
// numberOfSucceededThings succeeded) since the last increase.
func (c *RolloutConfig) grow(st rolloutState, succeeded int64) rolloutState {
	e := c.ExponentialRate
	if e == nil {
		return st
	}
	steps := int64(0)
	if n := e.RateIncreaseCriteria.NumberOfNotifiedThings; n > 0 {
		k := (st.Released - st.NotifiedMark) / n
		st.NotifiedMark += k * n
		steps += k
	}
	if n := e.RateIncreaseCriteria.NumberOfSucceededThings; n > 0 {
		k := (succeeded - st.SucceededMark) / n
		st.SucceededMark += k * n
		steps += k
	}
	for ; steps > 0 && st.Rate < MaxRolloutPerMinute; steps-- {
		st.Rate = min(st.Rate*e.IncrementFactor, MaxRolloutPerMinute)
	}
	return st
}

// rolloutStep decides, at now, how many of the waiting things a rollout
// releases, given how many executions have succeeded so far. It returns
// that number, the new state, and when to look again (zero when nothing is
// left waiting). A nil config releases everything at once.
func rolloutStep(c *RolloutConfig, st rolloutState, now time.Time, waiting, succeeded int64) (int64, rolloutState, time.Time) {
	if c == nil {
		st.Released += waiting
		return waiting, st, time.Time{}
	}
	if st.Rate == 0 {
		st.Rate = c.initialRate()
	}
	// Rate increases earned since the last step count from now on.
	st = c.grow(st, succeeded)
	switch {
	case st.WindowStart.IsZero():
		st.WindowStart, st.InWindow, st.WindowLimit = now, 0, c.allowance(st.Rate)
	case !now.Before(st.WindowStart.Add(time.Minute)):
		passed := now.Sub(st.WindowStart) / time.Minute
		st.WindowStart, st.InWindow, st.WindowLimit = st.WindowStart.Add(passed*time.Minute), 0, c.allowance(st.Rate)
	}
	n := min(max(st.WindowLimit-st.InWindow, 0), waiting)
	st.InWindow += n
	st.Released += n
	st = c.grow(st, succeeded)
	var wake time.Time
	if waiting > n {
		wake = st.WindowStart.Add(time.Minute)
	}
	return n, st, wake
}

package cli

import "github.com/awsfota/awsfota/internal/hugepages"

// hugePagesUsage is the --huge-pages flag's help, shared by the commands
// whose memory grows by gigabytes (cloud serve, sim fleet).
const hugePagesUsage = "ask Linux for transparent huge pages while the heap grows (where the kernel's setting is madvise): fewer page faults when thousands of devices connect"

// startHugePages starts advising huge pages on the heap (package hugepages)
// unless on is false. The returned func stops it and, under -v, logs what it
// did.
func startHugePages(e *env, on bool) (stop func()) {
	log := e.logger()
	if !on {
		return func() {}
	}
	a := hugepages.Start(hugepages.Options{})
	if s := a.Stats(); !s.Active {
		log.Debug("huge pages not advised", "why", s.Reason)
		return a.Stop
	}
	return func() {
		a.Stop()
		s := a.Stats()
		log.Debug("huge pages advised while the heap grew", "peakMiB", s.Peak>>20, "scans", s.Scans, "withdrawn", s.Withdrawn, "lastError", s.Err)
	}
}

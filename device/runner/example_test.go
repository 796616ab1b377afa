package runner

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/awsfota/awsfota/device/agent"
	"github.com/awsfota/awsfota/device/dfu/mcubootslot"
	"github.com/awsfota/awsfota/device/download"
	"github.com/awsfota/awsfota/device/flash"
	"github.com/awsfota/awsfota/device/state"
	"github.com/awsfota/awsfota/iotjobs"
	"github.com/awsfota/awsfota/jobdoc"
	"github.com/awsfota/awsfota/mcuboot"
)

// The application hears about an update through Config.OnEvent: Start when
// a job is taken, Progress while the image arrives, Done when it is verified
// and the device must reboot into it, Error and Canceled when it does not
// happen, and Completed once the cloud has accepted the final status. The
// callback runs on the runner's goroutine: hand the event to a channel or
// return quickly.
func Example_events() {
	// A device running 1.0.0, and an image 1.0.1 served over HTTP.
	primary, _ := flash.NewMem(flash.Geometry{Size: 128 << 10, SectorSize: 4096, WriteAlign: 4})
	secondary, _ := flash.NewMem(flash.Geometry{Size: 128 << 10, SectorSize: 4096, WriteAlign: 4})
	primary.WriteAt(exampleImage("1.0.0", 4000), 0)
	img := exampleImage("1.0.1", 40000)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.ServeContent(w, r, "fw.bin", time.Time{}, bytes.NewReader(img))
	}))
	defer srv.Close()
	doc, _ := jobdoc.Marshal(jobdoc.Spec{URL: srv.URL + "/fw.bin", Size: int64(len(img))})
	cloud := &jobs{exec: iotjobs.JobExecution{JobID: "fw-1", JobDocument: json.RawMessage(doc), Status: iotjobs.StatusQueued, VersionNumber: 1, ExecutionNumber: 1}}

	fetcher := download.New(download.Config{})
	defer fetcher.CloseIdleConnections()
	r, err := New(Config{
		Agent:           agent.Config{Thing: "dev-1", ProgressPercent: 50},
		Store:           &state.Mem{},
		Target:          mcubootslot.NewTarget(secondary, mcubootslot.Options{}),
		Boot:            mcubootslot.NewPrimary(primary, mcubootslot.Options{}),
		Fetcher:         fetcher,
		CheckpointBytes: 20000,
		OnEvent: func(e agent.AppEvent) {
			switch e.Kind {
			case agent.EventProgress:
				fmt.Printf("%s %d%%\n", e.Kind, e.Percent)
			case agent.EventDone:
				fmt.Printf("%s: %s image %s, reboot required: %v\n", e.Kind, e.ImageType, e.Version, e.RebootRequired)
			default:
				fmt.Println(e.Kind)
			}
		},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	cloud.r = r
	r.Connected() // the MQTT connection is up
	if err := r.Run(context.Background(), cloud); errors.Is(err, ErrReboot) {
		fmt.Println("the application reboots the device now")
	}
	// Output:
	// start
	// progress 80%
	// progress 100%
	// done: mcuboot image 1.0.1, reboot required: true
	// the application reboots the device now
}

func exampleImage(version string, n int) []byte {
	v, _ := mcuboot.ParseVersion(version)
	body := bytes.Repeat([]byte(version), n/len(version)+1)[:n]
	var b bytes.Buffer
	mcuboot.Create(&b, bytes.NewReader(body), int64(n), mcuboot.CreateOptions{Version: v, PadHeader: true})
	return b.Bytes()
}

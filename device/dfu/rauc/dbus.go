package rauc

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/godbus/dbus/v5"
)

// D-Bus names of RAUC's service.
const (
	busName   = "de.pengutronix.rauc"
	objPath   = dbus.ObjectPath("/")
	iface     = "de.pengutronix.rauc.Installer"
	propIface = "org.freedesktop.DBus.Properties"
)

// DBus is RAUC's D-Bus service. It implements Service.
type DBus struct {
	conn *dbus.Conn
	obj  dbus.BusObject
	// Poll is how often Install and WaitIdle read the Operation property
	// besides following RAUC's signals (default 2s).
	Poll time.Duration
}

var _ Service = (*DBus)(nil)

// Dial connects to RAUC on the D-Bus at address ("": the system bus, where
// rauc.service runs).
func Dial(address string) (*DBus, error) {
	var (
		conn *dbus.Conn
		err  error
	)
	if address == "" {
		conn, err = dbus.ConnectSystemBus()
	} else {
		conn, err = dbus.Connect(address)
	}
	if err != nil {
		where := address
		if where == "" {
			where = "the system bus"
		}
		return nil, fmt.Errorf("rauc: connecting to D-Bus (%s): %w (is dbus running, and may this user talk to de.pengutronix.rauc? see docs/linux.md)", where, err)
	}
	return &DBus{conn: conn, obj: conn.Object(busName, objPath), Poll: 2 * time.Second}, nil
}

// Close closes the connection.
func (d *DBus) Close() error { return d.conn.Close() }

func explain(method string, err error) error {
	var de dbus.Error
	if errors.As(err, &de) && de.Name == "org.freedesktop.DBus.Error.ServiceUnknown" {
		return fmt.Errorf("%s: RAUC's service (de.pengutronix.rauc) is not on the bus: start rauc.service: %w", method, err)
	}
	return fmt.Errorf("%s: %w", method, err)
}

func (d *DBus) property(ctx context.Context, name string, v any) error {
	var variant dbus.Variant
	if err := d.obj.CallWithContext(ctx, propIface+".Get", 0, iface, name).Store(&variant); err != nil {
		return explain("reading RAUC's "+name, err)
	}
	if err := variant.Store(v); err != nil {
		return fmt.Errorf("RAUC's %s is a %s: %w", name, variant.Signature(), err)
	}
	return nil
}

// Status reads Compatible, BootSlot, GetPrimary and GetSlotStatus.
func (d *DBus) Status(ctx context.Context) (System, error) {
	var s System
	if err := d.property(ctx, "Compatible", &s.Compatible); err != nil {
		return s, err
	}
	if err := d.property(ctx, "BootSlot", &s.BootSlot); err != nil {
		return s, err
	}
	// The bootloader may be unable to tell (every slot bad): no primary.
	_ = d.obj.CallWithContext(ctx, iface+".GetPrimary", 0).Store(&s.Primary)
	var raw []struct {
		Name   string
		Status map[string]dbus.Variant
	}
	if err := d.obj.CallWithContext(ctx, iface+".GetSlotStatus", 0).Store(&raw); err != nil {
		return s, explain("GetSlotStatus", err)
	}
	for _, r := range raw {
		str := func(k string) string {
			v, ok := r.Status[k]
			if !ok {
				return ""
			}
			s, _ := v.Value().(string)
			return s
		}
		s.Slots = append(s.Slots, Slot{Name: r.Name, Class: str("class"), BootName: str("bootname"), State: str("state"),
			BootStatus: str("boot-status"), BundleVersion: str("bundle.version"), BundleCompatible: str("bundle.compatible"), SHA256: str("sha256")})
	}
	return s, nil
}

// Mark calls Mark(state, slot).
func (d *DBus) Mark(ctx context.Context, state, slot string) error {
	var name, msg string
	if err := d.obj.CallWithContext(ctx, iface+".Mark", 0, state, slot).Store(&name, &msg); err != nil {
		return explain(fmt.Sprintf("Mark(%s, %s)", state, slot), err)
	}
	return nil
}

// watch subscribes to RAUC's Completed signal and property changes.
func (d *DBus) watch(ctx context.Context) (<-chan *dbus.Signal, func(), error) {
	// A buffer large enough that the connection delivers signals in order,
	// before the replies that follow them (godbus hands a signal over
	// synchronously when the channel has room).
	ch := make(chan *dbus.Signal, 512)
	d.conn.Signal(ch)
	completed := []dbus.MatchOption{dbus.WithMatchSender(busName), dbus.WithMatchObjectPath(objPath), dbus.WithMatchInterface(iface), dbus.WithMatchMember("Completed")}
	changed := []dbus.MatchOption{dbus.WithMatchSender(busName), dbus.WithMatchObjectPath(objPath), dbus.WithMatchInterface(propIface),
		dbus.WithMatchMember("PropertiesChanged"), dbus.WithMatchArg(0, iface)}
	stop := func() {
		d.conn.RemoveMatchSignal(completed...)
		d.conn.RemoveMatchSignal(changed...)
		d.conn.RemoveSignal(ch)
	}
	if err := d.conn.AddMatchSignalContext(ctx, completed...); err != nil {
		d.conn.RemoveSignal(ch)
		return nil, nil, explain("subscribing to Completed", err)
	}
	if err := d.conn.AddMatchSignalContext(ctx, changed...); err != nil {
		stop()
		return nil, nil, explain("subscribing to PropertiesChanged", err)
	}
	return ch, stop, nil
}

// waitIdle waits until Operation is "idle", woken by signals on ch or the
// poll.
func (d *DBus) waitIdle(ctx context.Context, ch <-chan *dbus.Signal) error {
	tick := time.NewTicker(d.Poll)
	defer tick.Stop()
	for {
		var op string
		if err := d.property(ctx, "Operation", &op); err != nil {
			return err
		}
		if op == "idle" {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-ch:
		case <-tick.C:
		}
	}
}

// WaitIdle returns once RAUC installs nothing.
func (d *DBus) WaitIdle(ctx context.Context) error {
	ch, stop, err := d.watch(ctx)
	if err != nil {
		return err
	}
	defer stop()
	return d.waitIdle(ctx, ch)
}

// Install waits for RAUC to be idle, calls InstallBundle and follows the
// install to its Completed signal.
func (d *DBus) Install(ctx context.Context, bundle string, progress func(int, string)) error {
	ch, stop, err := d.watch(ctx)
	if err != nil {
		return err
	}
	defer stop()
	// An install may be running still: started before this process
	// restarted, or by someone else. Wait for it, then forget its signals:
	// RAUC emits Completed before it sets Operation to idle, so they are in
	// ch by now.
	if err := d.waitIdle(ctx, ch); err != nil {
		return err
	}
	for len(ch) > 0 {
		<-ch
	}
	if err := d.obj.CallWithContext(ctx, iface+".InstallBundle", 0, bundle, map[string]dbus.Variant{}).Err; err != nil {
		return explain("InstallBundle", err)
	}
	tick := time.NewTicker(d.Poll)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err() // RAUC goes on: Reset or the next Install waits for it
		case sig := <-ch:
			switch sig.Name {
			case iface + ".Completed":
				var result int32
				if len(sig.Body) > 0 {
					result, _ = sig.Body[0].(int32)
				}
				if result == 0 {
					return nil
				}
				ie := &InstallError{Result: result}
				if err := d.property(ctx, "LastError", &ie.LastError); err != nil {
					return errors.Join(ie, err)
				}
				return ie
			case propIface + ".PropertiesChanged":
				if progress == nil || len(sig.Body) < 2 {
					continue
				}
				changed, _ := sig.Body[1].(map[string]dbus.Variant)
				if v, ok := changed["Progress"]; ok {
					var p struct {
						Percent int32
						Message string
						Depth   int32
					}
					if v.Store(&p) == nil {
						progress(int(p.Percent), p.Message)
					}
				}
			}
		case <-tick.C:
			// Signals are the news; this notices a lost bus or service. RAUC
			// emits Completed before it turns idle, so once idle the signal
			// is in ch — unless it never came.
			var op string
			if err := d.property(ctx, "Operation", &op); err != nil {
				return err
			}
			if op == "idle" && len(ch) == 0 {
				var last string
				d.property(ctx, "LastError", &last)
				return fmt.Errorf("RAUC is idle again but sent no Completed signal for the install (LastError %q): was rauc.service restarted?", last)
			}
		}
	}
}

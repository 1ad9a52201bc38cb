package xenbus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/xenblk/xenblk/xen"
)

// Driver carries out a machine's actions for one device. Runner calls it
// from a single goroutine, never concurrently.
type Driver interface {
	// Publish writes this end's static nodes (ActPublish).
	Publish() error
	// Connect sets up the data path (ActConnect); its error is fed back as
	// EvConnectDone.
	Connect() error
	// Attach and Refresh are the frontend's ActAttach and ActRefresh. A
	// backend driver returns nil.
	Attach() error
	Refresh() error
	// Disconnect tears the data path down (ActDisconnect).
	Disconnect()
	// Remove forgets the device (ActRemove), after which Run returns.
	Remove()
}

// Runner is the thin loop around a Machine: it watches the other end's
// state node (and, for a backend, its own `online` node), feeds the
// machine, and carries out its actions through the store and the Driver.
type Runner struct {
	Store   xen.Store
	Self    string // this end's directory, e.g. /local/domain/0/backend/vbd/1/51712
	Peer    string // the other end's directory
	Machine *Machine
	Driver  Driver
	// Hotplug says the toolstack runs a hotplug script for this backend
	// device, which reports in Self's hotplug-status node (libxl's
	// scripts): HotplugConnected there feeds EvHotplugDone, for a
	// machine made by NewHotplugBackend. A failure (another value, the
	// reason in hotplug-error) is logged: the toolstack removes a device
	// whose script failed.
	Hotplug bool
	// Lost, if not nil, signals that the transport saw the other end
	// vanish (its event channel closed); each receive feeds EvPeerLost.
	Lost <-chan struct{}
	// Abandon, if not nil, makes Run return at once when closed, writing
	// nothing and calling nothing: what a crash looks like to the other
	// end (used to test restarts).
	Abandon <-chan struct{}
	// Grace bounds how long Run keeps the handshake going after ctx is
	// cancelled, waiting for the other end to close. Zero means 5s.
	Grace time.Duration
	// OnStep, if not nil, is told both ends' states after each event
	// the machine takes, from Run's goroutine (a frontend's Open learns
	// so that the handshake ended Closed against a closed backend before
	// ever connecting, which no further event would change).
	OnStep func(self, peer State)
	Log    *slog.Logger
}

// Run drives the device until the machine removes it, or until ctx is
// cancelled and the grace period for a clean close has passed.
func (r *Runner) Run(ctx context.Context) error {
	log := r.Log
	if log == nil {
		log = slog.Default()
	}
	log = log.With("dev", r.Self)
	peerWatch, err := r.Store.Watch(r.Peer+"/state", "peer")
	if err != nil {
		return fmt.Errorf("xenbus: watch %s/state: %w", r.Peer, err)
	}
	defer peerWatch.Close()
	// A backend goes offline when the toolstack writes online=0; a
	// frontend when the toolstack removes its directory (as Linux's
	// xenbus unregisters a frontend whose node vanishes).
	var online <-chan xen.WatchEvent
	offlineNode := r.Self + "/state"
	if r.Machine.backend {
		offlineNode = r.Self + "/online"
	}
	w, err := r.Store.Watch(offlineNode, "online")
	if err != nil {
		return fmt.Errorf("xenbus: watch %s: %w", offlineNode, err)
	}
	defer w.Close()
	online = w.Events()
	var hotplug <-chan xen.WatchEvent
	if r.Hotplug {
		hw, err := r.Store.Watch(r.Self+"/"+KeyHotplugStatus, "hotplug")
		if err != nil {
			return fmt.Errorf("xenbus: watch %s/%s: %w", r.Self, KeyHotplugStatus, err)
		}
		defer hw.Close()
		hotplug = hw.Events()
	}

	// The other end's state as it is now, before we start: whether it
	// was ever seen decides what its vanishing means, and the watch's
	// first event may come only after the nodes are gone.
	if err := r.feed(Event{Kind: EvPeerState, State: r.readState(r.Peer)}, log); err != nil {
		return err
	}
	// A script that reported before we started (a restarted backend)
	// sends no further event.
	if done, _ := r.hotplugStatus(); done {
		if err := r.feed(Event{Kind: EvHotplugDone}, log); err != nil {
			return err
		}
	}
	if err := r.feed(Event{Kind: EvStart}, log); err != nil {
		return err
	}
	grace := r.Grace
	if grace == 0 {
		grace = 5 * time.Second
	}
	done := ctx.Done()
	var deadline <-chan time.Time
	for !r.Machine.Removed() {
		var ev Event
		select {
		case we, ok := <-peerWatch.Events():
			if !ok {
				return errors.New("xenbus: store connection closed")
			}
			ev = Event{Kind: EvPeerState, State: r.readState(r.Peer)}
			_ = we
		case _, ok := <-online:
			if !ok {
				return errors.New("xenbus: store connection closed")
			}
			v, err := r.Store.Read(offlineNode)
			if err != nil && !errors.Is(err, xen.ErrNotFound) {
				continue
			}
			if r.Machine.backend && err == nil && strings.TrimSpace(v) != "0" {
				continue
			}
			if !r.Machine.backend && (err == nil || r.Machine.Self() == Unknown) {
				continue // our directory is there (or not written yet)
			}
			ev = Event{Kind: EvOffline}
		case _, ok := <-hotplug:
			if !ok {
				return errors.New("xenbus: store connection closed")
			}
			done, failed := r.hotplugStatus()
			if failed != "" {
				reason, _ := r.Store.Read(r.Self + "/" + KeyHotplugError)
				log.Warn("the hotplug script failed; the toolstack will remove the device", "status", failed, "error", reason)
			}
			if !done {
				continue
			}
			ev = Event{Kind: EvHotplugDone}
		case <-r.Lost:
			ev = Event{Kind: EvPeerLost}
		case <-r.Abandon:
			return nil
		case <-done:
			done = nil
			deadline = time.After(grace)
			ev = Event{Kind: EvOffline}
		case <-deadline:
			log.Warn("other end did not close in time; removing anyway", "grace", grace)
			r.Driver.Disconnect()
			r.writeState(Closed, log)
			r.Driver.Remove()
			return ctx.Err()
		}
		if err := r.feed(ev, log); err != nil {
			return err
		}
	}
	return nil
}

// feed steps the machine and carries out its actions; a Connect result is
// fed straight back in. OnStep hears the outcome.
func (r *Runner) feed(ev Event, log *slog.Logger) error {
	if err := r.step(ev, log); err != nil {
		return err
	}
	if r.OnStep != nil {
		r.OnStep(r.Machine.Self(), r.Machine.Peer())
	}
	return nil
}

func (r *Runner) step(ev Event, log *slog.Logger) error {
	queue := []Event{ev}
	for len(queue) > 0 {
		ev, queue = queue[0], queue[1:]
		for _, a := range r.Machine.Step(ev) {
			log.Debug("xenbus action", "action", a.String(), "peer", r.Machine.Peer())
			switch a.Kind {
			case ActPublish:
				if err := r.Driver.Publish(); err != nil {
					return fmt.Errorf("xenbus: publish %s: %w", r.Self, err)
				}
			case ActConnect:
				err := r.Driver.Connect()
				if err != nil {
					log.Error("connect failed", "err", err)
					_ = r.Store.Write(r.Self+"/error", err.Error())
				}
				queue = append(queue, Event{Kind: EvConnectDone, Err: err})
			case ActAttach:
				if err := r.Driver.Attach(); err != nil {
					log.Error("attach failed", "err", err)
					_ = r.Store.Write(r.Self+"/error", err.Error())
					queue = append(queue, Event{Kind: EvOffline})
				}
			case ActRefresh:
				if err := r.Driver.Refresh(); err != nil {
					log.Warn("refresh failed", "err", err)
				}
			case ActDisconnect:
				r.Driver.Disconnect()
			case ActSetState:
				r.writeState(a.State, log)
			case ActRemove:
				r.Driver.Remove()
			}
		}
	}
	return nil
}

// The nodes of a backend device where the toolstack's hotplug script
// reports (xen-hotplug-common.sh's success, block-common.sh's ebusy).
const (
	KeyHotplugStatus = "hotplug-status"
	KeyHotplugError  = "hotplug-error"
	// HotplugConnected is the status of a script that succeeded.
	HotplugConnected = "connected"
)

// hotplugStatus reads the hotplug-status node: done when it says
// HotplugConnected; failed is any other value it holds.
func (r *Runner) hotplugStatus() (done bool, failed string) {
	if !r.Hotplug {
		return false, ""
	}
	v, err := r.Store.Read(r.Self + "/" + KeyHotplugStatus)
	if err != nil {
		return false, ""
	}
	v = strings.TrimSpace(v)
	if v == HotplugConnected {
		return true, ""
	}
	return false, v
}

func (r *Runner) readState(dir string) State {
	v, err := r.Store.Read(dir + "/state")
	if err != nil {
		return Unknown
	}
	return ParseState(strings.TrimSpace(v))
}

// writeState publishes our state, unless our directory is gone: writing
// would bring back a node the toolstack removed. The check and the write
// are one transaction: the toolstack removes the directory as soon as it
// sees Closed, possibly between them, and a state written after that
// would stay behind alone and make the next attach of the device fail.
func (r *Runner) writeState(s State, log *slog.Logger) {
	err := r.Store.Transaction(func(tx xen.Tx) error {
		if _, err := tx.Read(r.Self); err != nil {
			return err
		}
		return tx.Write(r.Self+"/state", s.Value())
	})
	if err != nil && !errors.Is(err, xen.ErrNotFound) {
		log.Warn("cannot write state", "state", s, "err", err)
	}
}

package celery

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/redis/go-redis/v9"
)

// StateDB keeps a worker's persistent state, the revoked task ids and its
// logical clock, across restarts, as `celery worker --statedb` does: a
// task revoked before a restart stays revoked after it. Celery's state db
// is a Python shelve file only Python reads; a StateDB holds JSON,
// {"revoked": {"<id>": <unix time revoked>}, "clock": <n>}, in a file
// (FileStateDB) or a Redis key (RedisStateDB), so Go workers can share or
// move it.
type StateDB interface {
	// Load returns the saved state, or nil and no error if none was saved.
	Load(ctx context.Context) ([]byte, error)
	// Save replaces the saved state.
	Save(ctx context.Context, state []byte) error
}

// WithStateDB makes the worker read its revoked ids and clock from db at
// Start, and save them after every revoke it receives and at shutdown
// (Celery's worker --statedb). Start fails if the saved state cannot be
// read or parsed.
func WithStateDB(db StateDB) WorkerOption { return func(o *workerOptions) { o.stateDB = db } }

// FileStateDB is a StateDB in a file, written atomically (a temporary file
// renamed over it).
func FileStateDB(path string) StateDB { return fileStateDB(path) }

type fileStateDB string

func (f fileStateDB) Load(context.Context) ([]byte, error) {
	b, err := os.ReadFile(string(f))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	return b, err
}

func (f fileStateDB) Save(_ context.Context, state []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(string(f)), filepath.Base(string(f))+".*.tmp")
	if err != nil {
		return err
	}
	_, err = tmp.Write(state)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), string(f))
	}
	if err != nil {
		_ = os.Remove(tmp.Name())
	}
	return err
}

// RedisStateDB is a StateDB in a Redis string key, kept without expiry
// (the ids in it expire by themselves after RevokeExpires).
func RedisStateDB(client redis.UniversalClient, key string) StateDB {
	return redisStateDB{client: client, key: key}
}

type redisStateDB struct {
	client redis.UniversalClient
	key    string
}

func (r redisStateDB) Load(ctx context.Context) ([]byte, error) {
	b, err := r.client.Get(ctx, r.key).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	return b, err
}

func (r redisStateDB) Save(ctx context.Context, state []byte) error {
	return r.client.Set(ctx, r.key, state, 0).Err()
}

type savedState struct {
	Revoked map[string]any `json:"revoked"`
	Clock   int64          `json:"clock"`
}

// loadState merges the saved state into the worker's (at Start).
func (w *Worker) loadState(ctx context.Context) error {
	db := w.opts.stateDB
	if db == nil {
		return nil
	}
	b, err := db.Load(ctx)
	if err != nil {
		return fmt.Errorf("celery: worker: load state db: %w", err)
	}
	if b == nil {
		return nil
	}
	var st savedState
	if err := json.Unmarshal(b, &st); err != nil {
		return fmt.Errorf("celery: worker: state db is not kombu-go's JSON state: %w", err)
	}
	w.state.revoked.update(st.Revoked)
	w.state.clock.adjust(st.Clock)
	w.log.Info("celery: state db loaded", "revoked", len(st.Revoked), "clock", st.Clock)
	return nil
}

// saveState writes the worker's state to its StateDB; a failure is logged
// and reported to the error handler.
func (w *Worker) saveState(ctx context.Context) {
	db := w.opts.stateDB
	if db == nil {
		return
	}
	b, err := json.Marshal(savedState{Revoked: w.state.revoked.data(), Clock: w.state.clock.v.Load()})
	if err == nil {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		err = db.Save(sctx, b)
		cancel()
	}
	if err != nil {
		err = fmt.Errorf("celery: worker: save state db: %w", err)
		w.log.Error(err.Error())
		w.onError(err)
	}
}

// runStateSaver saves the state each time stateChanged is signalled, until
// ctx ends; then it saves once more.
func (w *Worker) runStateSaver(ctx context.Context, changed <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	for {
		select {
		case <-changed:
			w.saveState(ctx)
		case <-ctx.Done():
			w.saveState(ctx)
			return
		}
	}
}

// stateChanged asks for the state to be saved (coalesced).
func (w *Worker) stateChanged() {
	if w.opts.stateDB == nil || w.stateSave == nil {
		return
	}
	select {
	case w.stateSave <- struct{}{}:
	default:
	}
}

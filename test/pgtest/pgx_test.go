// Tests through pgx's database/sql driver, as the brain's store uses it.

package pgtest

import (
	"context"
	"database/sql"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib"
)

func openPGX(t *testing.T, dsn string) *sql.DB {
	t.Helper()
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func TestPGXTwoDatabases(t *testing.T) {
	srv := Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	a, b := openPGX(t, srv.NewDatabase(t)), openPGX(t, srv.NewDatabase(t))
	for i, db := range []*sql.DB{a, b} {
		if _, err := db.ExecContext(ctx, "CREATE TABLE kv (k text PRIMARY KEY, v bigint NOT NULL)"); err != nil {
			t.Fatal(err)
		}
		if _, err := db.ExecContext(ctx, "INSERT INTO kv VALUES ($1, $2)", "n", int64(i+10)); err != nil {
			t.Fatal(err)
		}
	}
	for i, db := range []*sql.DB{a, b} {
		var v int64
		if err := db.QueryRowContext(ctx, "SELECT v FROM kv WHERE k = $1", "n").Scan(&v); err != nil {
			t.Fatal(err)
		}
		if v != int64(i+10) {
			t.Errorf("db %d: v = %d", i, v)
		}
	}
}

func TestPGXKillRestartKeepsCommittedData(t *testing.T) {
	srv := Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dsn := srv.NewDatabase(t)
	db := openPGX(t, dsn)
	if _, err := db.ExecContext(ctx, "CREATE TABLE kv (k int PRIMARY KEY)"); err != nil {
		t.Fatal(err)
	}
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 100 {
		if _, err := tx.ExecContext(ctx, "INSERT INTO kv VALUES ($1)", i); err != nil {
			t.Fatal(err)
		}
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	// An uncommitted transaction must not survive.
	tx, err = db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.ExecContext(ctx, "INSERT INTO kv VALUES (1000)"); err != nil {
		t.Fatal(err)
	}

	srv.Kill()
	if err := srv.Restart(); err != nil {
		t.Fatal(err)
	}
	db2 := openPGX(t, dsn)
	var n, maxK int
	if err := db2.QueryRowContext(ctx, "SELECT count(*), max(k) FROM kv").Scan(&n, &maxK); err != nil {
		t.Fatal(err)
	}
	if n != 100 || maxK != 99 {
		t.Fatalf("after crash: count %d max %d, want 100 and 99", n, maxK)
	}
}

func TestPGXSharedDatabase(t *testing.T) {
	db := openPGX(t, SharedDatabase(t))
	var name string
	if err := db.QueryRow("SELECT current_database()").Scan(&name); err != nil {
		t.Fatal(err)
	}
	if name == "postgres" {
		t.Fatal("SharedDatabase gave the postgres database")
	}
}

// Package ovsdb is l2span's access to a switch's hardware_vtep database:
// the models generated from vtep.ovsschema by libovsdb's modelgen
// (`make generate`), operation builders for the rows the hwvtep backend
// writes, and Client, which keeps a libovsdb connection with a monitor of
// the tables the backend reads, reconnecting when it fails.
package ovsdb

package ovsdb

//go:generate go tool modelgen -p ovsdb -o . vtep.ovsschema

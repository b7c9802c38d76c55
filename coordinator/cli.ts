#!/usr/bin/env node
// coordctl: the operator's CLI. Parse, call the coordinator, print (the commands: cli/).
import { runMain } from '../common/cli.js';
import { main } from './cli/dispatch.js';

runMain('coordctl', main);

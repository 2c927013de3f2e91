/**
 * `node --import ./bench/ab/swap.ts`: replaces one of coinshop's modules by a bench arm, named by
 * AB_SWAP (`sqlite-driver`, `sqlite-kysely` or `log`), so both arms run the same server code but for that module.
 */
import { register } from 'node:module';

register(new URL('./swap-hooks.ts', import.meta.url), { data: process.env['AB_SWAP'] });

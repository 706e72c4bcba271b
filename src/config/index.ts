export * from './config.ts';
export * from './presets.ts';
export { linspace, pyRound, makeDivisible, perLayerMultipliers } from './scaling.ts';

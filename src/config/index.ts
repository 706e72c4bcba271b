export * from './config.ts';
export * from './presets.ts';
export { linspace, makeDivisible, perLayerMultipliers, pyRound } from './scaling.ts';
